"""Column-wise validation of Parquet batches (data/record_files/columns.py) against the row-by-row validator: the same records,
the same errors (row, field, reason) in the same order, on generated files mixing good rows, bad rows of every
kind, rows written in other accepted forms, and duplicates across batch boundaries."""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trendnlp.data.record_files.channels import context_channels
from trendnlp.data.record_files.columns import validated_tables
from trendnlp.data.record_files.keys import KeySet
from trendnlp.data.record_files.records import read_records
from trendnlp.data.record_files.io import ErrorReport, RecordError
from trendnlp.labels import LabelRule

CHOICES = {
    "product_id": ["p1", "p2", "p3", " p4 ", "", None, "p\u30005", "p6\x1c"] + [f"q{i}" for i in range(40)],
    "title": ["Red mug", "", None, "  spaced  "],
    "description": ["A mug.", None, ""],
    "reviews": [None, [], ["nice", "bad"], ["ok", None], [" "]],
    "sales": [[1.0, 2.0, 0.0, 4.0], [3.0], [], None, [1.0, math.nan], [1.0, -2.0], [math.inf], [1.0, None],
              [0.5] * 30, [2.0, 2.0, 2.0, 2.0]],
    "cutoff": ["2011-06-05", "2011-06-12", "2011-02-30", "2011-06-05T10:00", "", None, "20110605", "x",
               "0000-01-01", " 2011-06-05", "2011-6-5"],
    "freq": ["W", "", None, "Q", "M"],
    "label": ["rising", "falling", "", None, "up", "stable"],
    "future_sales": [None, [], [1.0, 2.0, 9.0, 9.0], [math.nan], [0.0, 0.0]],
    "first_sale": [None, "2010-01-03", "2010-13-01", ""],
    "category": [None, "Kitchen", ""],
    "change": [None, 0.3, math.nan, math.inf],
}


# how many of each field's first CHOICES are valid as the columns write them: picked 9 times in 10
CLEAN = {"product_id": 0, "title": 3, "description": 3, "reviews": 3, "sales": 2, "cutoff": 2, "freq": 1,
         "label": 2, "future_sales": 1, "first_sale": 2, "category": 3, "change": 2}


def _rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)

    def pick(options, clean=0):
        return options[rng.integers(clean)] if clean and rng.random() < 0.9 else options[rng.integers(len(options))]

    rows = []
    for _ in range(n):
        row = {name: pick(options, CLEAN[name]) for name, options in CHOICES.items()}
        if rng.random() < 0.9:
            row["product_id"] = f"q{rng.integers(300)}"
        n_sales = len(row["sales"] or [])
        for ch in context_channels():
            good = [1.0] * n_sales
            row[ch.name] = pick([None, good, good[:-1] or [1.0, 1.0], [None] * n_sales, [-1.0] * n_sales], 2)
        rows.append(row)
    return rows


def _schema(ints: bool) -> pa.Schema:
    num = pa.list_(pa.int64() if ints else pa.float64())
    fields = [("product_id", pa.int64() if ints else pa.string()), ("title", pa.string()),
              ("description", pa.string()), ("reviews", pa.list_(pa.string())), ("sales", num),
              ("cutoff", pa.date32() if ints else pa.string()), ("freq", pa.string()), ("label", pa.string()),
              ("future_sales", num), ("first_sale", pa.string()), ("category", pa.string()), ("change", pa.float64())]
    return pa.schema(fields + [(ch.name, pa.list_(pa.float64())) for ch in context_channels()])


def _as_ints(row: dict, i: int) -> dict:
    """The same kinds of rows with integer ids, date32 cutoffs and integer units (no NaN / inf there)."""
    ints = lambda v: None if v is None else [int(x) if x is not None and math.isfinite(x) else None for x in v]  # noqa: E731
    cutoff = row["cutoff"] if row["cutoff"] in ("2011-06-05", "2011-06-12") else None
    return {**row, "product_id": i % 150 if row["product_id"] else None, "sales": ints(row["sales"]),
            "future_sales": ints(row["future_sales"]), "cutoff": cutoff and dt.date.fromisoformat(cutoff)}


def _both(path, **kw):
    report_cols, report_rows = ErrorReport(), ErrorReport()
    tables = list(validated_tables(path, history=26, rule=LabelRule(), on_error="skip", report=report_cols,
                                   seen=KeySet(), **kw))
    by_columns = [r for t in tables for r in t.to_pylist()]
    by_rows = read_records(path, history=26, rule=LabelRule(), on_error="skip", report=report_rows)
    return by_columns, by_rows, report_cols, report_rows


def _same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k] == y[k] or (x[k] != x[k] and y[k] != y[k]), (k, x[k], y[k])


@pytest.mark.parametrize("ints", [False, True], ids=["strings_floats", "ints_date32"])
def test_columns_validate_as_the_row_path(tmp_path, ints):
    rows = _rows(600, seed=int(ints))
    if ints:
        rows = [_as_ints(r, i) for i, r in enumerate(rows)]
    path = tmp_path / "records.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=_schema(ints)), path)
    by_columns, by_rows, rep_cols, rep_rows = _both(path, batch_size=64)  # duplicates across batches too
    _same(by_columns, by_rows)
    assert [e.as_report() for e in rep_cols.errors] == [e.as_report() for e in rep_rows.errors]
    assert len(by_rows) > 50 and len(rep_rows) > 100  # both kinds, and many errors of many fields
    assert len({e.field for e in rep_rows.errors}) >= 8
    from trendnlp.data.record_files.columns import _sure_rows
    from trendnlp.data.record_files.schema import arrow_features

    sure, _ = _sure_rows(pq.read_table(path).to_batches()[0], 26, arrow_features().arrow_schema)
    assert 0.3 * len(by_rows) < sure.sum() < len(rows)  # the columns took most good rows, not the bad ones
    first = rep_rows.errors[0]
    with pytest.raises(RecordError) as raised:
        list(validated_tables(path, history=26, rule=LabelRule(), on_error="raise", seen=KeySet(), batch_size=64))
    assert str(raised.value) == str(first)


def test_an_untyped_column_sends_its_batch_to_the_row_path(tmp_path):
    """A column of another type (here labels as integers) is checked row by row and named there."""
    rows = [{"product_id": f"p{i}", "sales": [1.0, 2.0], "label": i % 2} for i in range(5)]
    path = tmp_path / "r.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    by_columns, by_rows, rep_cols, rep_rows = _both(path)
    assert by_columns == by_rows == []
    assert [e.as_report() for e in rep_cols.errors] == [e.as_report() for e in rep_rows.errors]
    assert rep_cols.errors[0].field == "label"
