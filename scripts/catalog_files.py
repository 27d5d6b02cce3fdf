"""Catalog files for the labeling benchmarks (scripts/benchmark_labeling.py, scripts/labeling_backends.py): record
files of a fixed Parquet schema, stream-written so that a million rows never sit in memory at once.

Only these two scripts (and scripts/experiments/gpu_check.sh) import it; it imports no other script but
make_samples.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
SCHEMA_FIELDS = ("product_id", "title", "description", "reviews", "sales", "cutoff", "freq", "label", "future_sales")
CHUNK_PRODUCTS = 250  # products simulated at a time: ~1,700 records, so memory stays small while generating


def catalog_schema():
    """The Parquet schema of a catalog file (the fields of SCHEMA_FIELDS)."""
    import pyarrow as pa

    lst = pa.list_(pa.float64())
    return pa.schema([("product_id", pa.string()), ("title", pa.string()), ("description", pa.string()),
                      ("reviews", pa.list_(pa.string())), ("sales", lst), ("cutoff", pa.string()),
                      ("freq", pa.string()), ("label", pa.string()), ("future_sales", lst)])


def write_catalog(records: list[dict], n_rows: int, path: Path, chunk: int = 50_000) -> int:
    """Stream-write `n_rows` rows: the records in order, repeated with new product ids ("<id>~<k>") as needed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, catalog_schema()) as writer:
        buf = []
        for i in range(n_rows):
            rec, k = records[i % len(records)], i // len(records)
            buf.append({f: rec[f] for f in SCHEMA_FIELDS} | ({"product_id": f"{rec['product_id']}~{k}"} if k else {}))
            if len(buf) == chunk:
                writer.write_table(pa.Table.from_pylist(buf, schema=catalog_schema()))
                buf = []
        if buf:
            writer.write_table(pa.Table.from_pylist(buf, schema=catalog_schema()))
    return n_rows


def write_long_text_catalog(n_rows: int, path: Path, seed: int = 0) -> int:
    """Stream-write n_rows data_samples-style records (title, description, 5 newest reviews): make_samples.py's
    generating process run chunk by chunk with seeds seed, seed+1, ...; product ids get a chunk prefix."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(SCRIPTS))
    import make_samples as ms

    written, chunk = 0, 0
    with pq.ParquetWriter(path, catalog_schema()) as writer:
        while written < n_rows:
            rng = np.random.default_rng(seed + chunk)
            products = ms.make_products(rng, CHUNK_PRODUCTS)
            log, reviews = ms.simulate(rng, products)
            splits = ms.build_records(rng, products, ms.weekly_units(log, [p["product_id"] for p in products]),
                                      reviews)
            recs = sorted((r for part in splits.values() for r in part), key=lambda r: (r["cutoff"], r["product_id"]))
            recs = [{f: r.get(f) for f in SCHEMA_FIELDS} | {"product_id": f"c{chunk}-{r['product_id']}"}
                    for r in recs[: n_rows - written]]
            writer.write_table(pa.Table.from_pylist(recs, schema=catalog_schema()))
            written, chunk = written + len(recs), chunk + 1
    return written


def write_or_catalog(records_file: str, n_rows: int, path: Path) -> int:
    """The first n_rows prepared Online Retail records, in file order."""
    import pyarrow.parquet as pq

    table = pq.read_table(records_file).slice(0, n_rows)
    pq.write_table(table, path)
    return table.num_rows
