"""Evaluation: metrics (scikit-learn), plots (matplotlib), `evaluate` (a saved model on labelled records) and
the faithfulness check of explanations; shared by training, the CLI and the benchmark.
May import: trendnlp.labels, trendnlp.config, trendnlp.data, trendnlp.model.
"""
