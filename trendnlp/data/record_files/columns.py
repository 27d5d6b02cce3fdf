"""Record validation of a Parquet batch by columns: the rows sure to pass are normalised without a Python step
per row, the others go through the one validator, which names what is wrong.

`validate_record` (data/record_files/records.py) stays the only place that decides on and words an error (file, row,
field). Here the same rules run at once over a batch's Arrow columns, and only to pick the rows that
certainly pass them: typed as declared (strings, lists of numbers), ids without surrounding spaces, ISO dates
written as YYYY-MM-DD, number lists finite and >= 0 of the right lengths, known labels and frequencies. Such
a row's normalised record is its columns (nulls filled as `validate_record` fills them). Every other row, the
bad ones and those merely written otherwise (a date as a timestamp, a label to derive from future_sales), is
handed to `validate_record` as before, so messages and results are the ones of the row-by-row path; a test
compares both on generated batches. Duplicate (product_id, cutoff) keys are found per batch (data.keys).

    batch --column checks--> sure rows: columns as they are ---------------\\
          \\--> other rows: validate_record (record, or RecordError) -------> table in row order, duplicates out
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trendnlp.data.record_files.io import (ErrorReport, RecordError, _parquet_batches, detect_format, iter_raw_batches,
                              unreadable_as_data_error)
from trendnlp.data.record_files.records import validate_batch, validate_batches
from trendnlp.data.record_files.schema import FREQS, arrow_features, record_schema
from trendnlp.labels import LABELS, LabelRule

# what str.strip() removes (str.isspace): Unicode separators plus these controls; ids with them at either end
# are stripped by the row path, so they leave the column path
_EDGE_SPACE = r"^[\p{Z}\x09-\x0d\x1c-\x1f\x85]|[\p{Z}\x09-\x0d\x1c-\x1f\x85]$"


def record_tables(path: str | Path, **kw) -> Iterator[pa.Table]:
    """A records file's valid records as Arrow tables of the declared columns, a batch at a time, each file
    with its own duplicate check: Parquet validated by columns (`validated_tables`), other formats row by row
    (their rows are Python objects already). kw: history, rule, on_error, report."""
    from trendnlp.data.record_files.keys import KeySet

    if detect_format(path) == "parquet":
        yield from validated_tables(path, seen=KeySet(), **kw)
        return
    schema = arrow_features().arrow_schema
    for batch in validate_batches(iter_raw_batches(path), source=str(path), csv_encoded=detect_format(path) == "csv",
                                  seen=KeySet(), **kw):
        yield pa.Table.from_pylist([rec for _, rec in batch], schema=schema)


def validated_tables(path: str | Path, *, history: int | None, rule: LabelRule | None, on_error: str = "raise",
                     report: ErrorReport | None = None, seen=None, batch_size: int = 8192) -> Iterator[pa.Table]:
    """A Parquet records file validated a batch at a time: each batch's valid records as a table of the
    declared record columns (`schema.arrow_features`), in row order.

    Args:
        path: a .parquet records file.
        history, rule: as for `validate_record`.
        on_error: "raise" raises the first bad row of the file; "skip" leaves bad rows out and adds them to
            `report`, in row order.
        report: collects skipped rows.
        seen: the file's key set (data.record_files.keys.KeySet) for the duplicate check.
    """
    schema = arrow_features().arrow_schema
    source, first = str(path), 1
    with unreadable_as_data_error(path):
        for batch in _parquet_batches(Path(path), batch_size):
            table, errors = _validate(batch, first, schema, source, history, rule or LabelRule(), seen)
            first += batch.num_rows
            if errors and on_error == "raise":
                raise errors[0]
            for err in errors:
                if report is not None:
                    report.add(err)
            yield table


def _validate(batch: pa.RecordBatch, first: int, schema: pa.Schema, source: str, history, rule, seen):
    n = batch.num_rows
    ok, cols = _sure_rows(batch, history, schema)
    rows = np.arange(first, first + n)
    sure = np.flatnonzero(ok)
    parts, order, errors = [pa.Table.from_arrays([c.filter(pa.array(ok)) for c in cols], schema=schema)], [rows[sure]], []
    other = np.flatnonzero(~ok)
    if len(other):
        report = ErrorReport()  # duplicates are checked below, over the whole batch
        good = validate_batch(zip(rows[other].tolist(), batch.take(pa.array(other)).to_pylist()), source=source,
                              on_error="skip", history=history, rule=rule, report=report)
        errors += report.errors
        parts.append(pa.Table.from_pylist([rec for _, rec in good], schema=schema))
        order.append(np.asarray([n for n, _ in good], dtype=np.int64))
    table = pa.concat_tables(parts)
    row_of = np.concatenate(order)
    sort = np.argsort(row_of, kind="stable")
    table, row_of = table.take(pa.array(sort)), row_of[sort]
    if seen is not None and table.num_rows:
        pids, cutoffs = table.column("product_id").to_pylist(), table.column("cutoff").to_pylist()
        new = seen.add_many(list(zip(pids, cutoffs)))
        for i in np.flatnonzero(~new).tolist():
            key = (pids[i], cutoffs[i])
            errors.append(RecordError(source, int(row_of[i]), "product_id", f"duplicate (product_id, cutoff) = "
                                      f"{key}; each must be unique in a file", pids[i]))
        table = table.filter(pa.array(new))
    errors.sort(key=lambda e: e.row)
    return table, errors


def _sure_rows(batch: pa.RecordBatch, history: int | None, schema: pa.Schema) -> tuple[np.ndarray, list]:
    """(rows that certainly pass, (n,) bool; every declared column normalised, (n,) each, valid where ok)."""
    n, names = batch.num_rows, set(batch.schema.names)
    ok = np.ones(n, dtype=bool)
    if "product_id" not in names or "sales" not in names:
        return np.zeros(n, dtype=bool), [pa.nulls(n, f.type) for f in schema]
    cols = {}
    sales_len = None
    kinds = record_schema()
    for field in schema:
        name, kind = field.name, kinds[field.name][0]
        col = batch.column(name) if name in names else pa.nulls(n)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        col, good = _column(name, kind, col, n, history, sales_len)
        if name == "sales" and good is not None:
            sales_len = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False)
        if good is None:
            return np.zeros(n, dtype=bool), [pa.nulls(n, f.type) for f in schema]
        ok &= good
        cols[name] = col.cast(field.type) if col.type != field.type else col
    # a missing label is derived from future_sales by the rule: left to the row path
    ok &= cols["label"].is_valid().to_numpy(zero_copy_only=False) | cols["future_sales"].is_null().to_numpy(
        zero_copy_only=False)
    return ok, [cols[f.name] for f in schema]


def _column(name: str, kind: str, col: pa.Array, n: int, history, sales_len):
    """(normalised column, rows it lets through (n,) bool); None when its type is not one the columns check
    (every row then takes the row path)."""
    t, null = col.type, pa.types.is_null(col.type)
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    if kind == "str":
        if name == "product_id":
            if pa.types.is_integer(t):
                return col.cast(pa.string()), valid
            if not pa.types.is_string(t):
                return None, None
            spaced = pc.match_substring_regex(col, _EDGE_SPACE).fill_null(True).to_numpy(zero_copy_only=False)
            return col, valid & ~spaced & (pc.utf8_length(col).fill_null(0).to_numpy(zero_copy_only=False) > 0)
        if not (null or pa.types.is_string(t)):
            return None, None
        col = pa.nulls(n, pa.string()) if null else col
        return (col if name == "category" else col.fill_null("")), np.ones(n, dtype=bool)  # category may be null
    if kind == "date":
        return _dates(col, n)
    if kind in ("freq", "label"):
        if not (null or pa.types.is_string(t)):
            return None, None
        col = pa.nulls(n, pa.string()) if null else col
        allowed = FREQS if kind == "freq" else LABELS
        empty = pc.equal(col, "").fill_null(True)
        if kind == "freq":
            col = pc.if_else(empty, "W", col)
        else:
            col = pc.if_else(empty, pa.scalar(None, pa.string()), col)
        known = pc.is_in(col, pa.array(allowed)).fill_null(kind == "label").to_numpy(zero_copy_only=False)
        return col, known
    if kind == "float":  # change: finite or missing (NaN is missing)
        if null:
            return pa.nulls(n, pa.float64()), np.ones(n, dtype=bool)
        if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
            return None, None
        x = col.cast(pa.float64())
        v = x.fill_null(np.nan).to_numpy(zero_copy_only=False)
        return pc.if_else(pc.is_nan(x), pa.scalar(None, pa.float64()), x), ~np.isinf(v)
    if kind == "list[str]":  # reviews: null is no reviews; elements must be text
        if null:
            return pa.array([[]] * n, pa.list_(pa.string())), np.ones(n, dtype=bool)
        if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_string(t.value_type):
            return None, None
        bad = _rows_with(pc.is_null(col.flatten()), col, n)
        return pc.if_else(col.is_null(), pa.scalar([], t), col), ~bad
    return _numbers(name, kind, col, n, history, sales_len)


def _numbers(name: str, kind: str, col: pa.Array, n: int, history, sales_len):
    """Number lists: sales (required, 1..history periods), future_sales (empty is missing), context channels
    (as long as sales; nulls only where the channel allows them)."""
    t = col.type
    if pa.types.is_null(t):
        return pa.nulls(n, pa.list_(pa.float64())), np.full(n, name != "sales")
    if not pa.types.is_list(t) or not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        return None, None
    col = col.cast(pa.list_(pa.float64()))
    values = col.flatten()
    x = values.fill_null(0.0).to_numpy(zero_copy_only=False)
    bad_value = ~np.isfinite(x) | (x < 0)
    if kind != "list[float?]":
        bad_value |= values.is_null().to_numpy(zero_copy_only=False)
    else:  # a nullable channel's 0 (price: none known) becomes null in the row path, which says so once
        bad_value |= (x == 0) & values.is_valid().to_numpy(zero_copy_only=False)
    ok = ~_rows_with(pa.array(bad_value), col, n)
    length = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False)
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    if name == "sales":
        ok &= valid & (length >= 1) & (length <= (history or np.iinfo(np.int64).max))
    elif name == "future_sales":
        col = pc.if_else(pc.equal(pc.list_value_length(col), 0).fill_null(False), pa.scalar(None, col.type), col)
    else:
        ok &= ~valid | (length == sales_len)
    return col, ok


def _dates(col: pa.Array, n: int):
    """ISO dates: strings written exactly as YYYY-MM-DD (year >= 1) or date32; null or "" is missing."""
    t = col.type
    if pa.types.is_null(t):
        return pa.nulls(n, pa.string()), np.ones(n, dtype=bool)
    if pa.types.is_date32(t):
        return col.cast(pa.string()), np.ones(n, dtype=bool)
    if not pa.types.is_string(t):
        return None, None
    col = pc.if_else(pc.equal(col, "").fill_null(False), pa.scalar(None, pa.string()), col)
    parsed = pc.strptime(col, format="%Y-%m-%d", unit="s", error_is_null=True)
    same = pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), col)  # Feb 30, "2011-6-5", " 2011-..." differ
    exact = pc.and_(same, pc.invert(pc.starts_with(col, "0000"))).fill_null(False).to_numpy(zero_copy_only=False)
    return col, exact | col.is_null().to_numpy(zero_copy_only=False)


def _rows_with(flags: pa.Array, lists: pa.Array, n: int) -> np.ndarray:
    """(n,) bool: rows of a list column with a true flag among their elements (flags over lists.flatten())."""
    f = flags.to_numpy(zero_copy_only=False)
    out = np.zeros(n, dtype=bool)
    if f.any():
        out[np.asarray(pc.list_parent_indices(lists))[f]] = True
    return out
