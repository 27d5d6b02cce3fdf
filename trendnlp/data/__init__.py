"""Data: product records (schema, validation, I/O), order logs -> leakage-safe windows, time splits, features, batches.
May import: trendnlp.labels, trendnlp.config.
"""
