"""Data, by stage: `orderlog` (order log -> product records), `record_files` (the record declared once, reading,
validating and writing record files, splits) and `inputs` (records -> model inputs: features, batches, Arrow).
Each stage imports only the ones before it (inputs and orderlog read record_files).
May import: trendnlp.labels, trendnlp.config.
"""
