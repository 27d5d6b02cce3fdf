"""Benchmark: the Online Retail benchmark in one command, its baselines and its HTML report.
May import: every stage below it (labels, config, data, model, evaluation, training, inference); never cli.
"""
