"""Model: BERT+LoRA text encoder, LSTM sales encoder, fusion head, TrendClassifier (save/load/predict), calibration.
May import: trendnlp.labels, trendnlp.config, trendnlp.data.
"""
