"""Evaluation: metrics (scikit-learn) and plots (matplotlib), shared by training and the benchmark.
May import: trendnlp.labels, trendnlp.config, trendnlp.data, trendnlp.model.
"""
