"""Inference: streaming catalog labeling and its resumable I/O, labeling an order log as of a date, ONNX and
self-contained export, explanation reports and HTTP serving; predictions themselves run in model/predict.py.
May import: labels, config, data, model, evaluation, training.
"""
