"""Inference: streaming catalog labeling and its resumable I/O (later: explanations, ONNX export, HTTP serving).
May import: labels, config, data, model, evaluation, training.
"""
