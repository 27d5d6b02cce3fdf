"""The order log -> product records (`trendnlp prepare`): input tables, aggregation to periods, as-of
lookups, windows, presets and the options of the verbs that read an order log."""
