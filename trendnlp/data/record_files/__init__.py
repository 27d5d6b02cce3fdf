"""Record files: the record declared once (schema), the channel registry, reading and validating records (rows
and Arrow columns), the one atomic writer, parts, time splits, counts and fingerprints."""
