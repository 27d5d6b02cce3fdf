"""Model: BERT+LoRA text encoder, LSTM sales encoder, fusion head, TrendClassifier (compose, save, load), the
prediction core (predict.py) and its ONNX runtime, load_model, calibration, explanations, the model card.
May import: trendnlp.labels, trendnlp.config, trendnlp.data.
"""
