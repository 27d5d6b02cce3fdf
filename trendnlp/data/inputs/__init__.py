"""Model inputs from records: the text string and per-period sales channels, the summary statistics, batches
(collate), the product-grouped sampler and the memory-mapped Arrow build."""
