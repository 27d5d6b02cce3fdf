"""Product records (docs/data.md): validation of raw rows into normalised records, and the read entry points.

The readers (trendnlp.data.record_files.io) yield `(row_number, raw_dict)` pairs so that a bad value is reported with its
file, row and field. `validate_record` turns a raw dict into a normalised record (every field of
trendnlp.data.record_files.schema.record_schema(); the optional ones None when absent), e.g.:

    {"product_id": str, "title": str, "description": str, "reviews": list[str], "sales": list[float],
     "cutoff": str | None (ISO date), "freq": str, "label": str | None, "future_sales": list[float] | None}

`load_records` validates a whole file and returns a `datasets.Dataset`; `iter_record_chunks` streams
validated records in chunks for catalog-scale labeling.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from trendnlp.data.record_files.channels import context_channels
from trendnlp.data.record_files.io import (ErrorReport, RecordError, detect_format, iter_frame_rows, iter_raw_rows,
                              missing as _missing)
from trendnlp.data.record_files.schema import FREQS, record_fields
from trendnlp.labels import LABELS, LabelRule



# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _as_list(value: Any, name: str, csv_encoded: bool) -> list | None:
    if _missing(value):  # None, or a pandas/CSV empty cell (NaN, pandas' NA)
        return None
    if isinstance(value, str):
        if not csv_encoded:
            raise _Bad(name, f"expected a list, found the string {value[:40]!r}")
        s = value.strip()
        if s == "":
            return None
        try:
            value = json.loads(s)
        except json.JSONDecodeError:
            raise _Bad(name, f"expected a JSON-encoded list like [1, 0, 3], found {s[:40]!r}") from None
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()  # numpy / pyarrow arrays
    if not isinstance(value, (list, tuple)):
        raise _Bad(name, f"expected a list, found {type(value).__name__} {value!r:.40}")
    return list(value)


class _Bad(Exception):
    def __init__(self, field: str, reason: str):
        self.field, self.reason = field, reason


def _numbers(values: list, name: str) -> list[float]:
    out = []
    for i, v in enumerate(values):
        # numbers.Real takes numpy scalars (np.int64, np.float32); booleans (Python or numpy) are not units
        if _is_bool(v) or not isinstance(v, numbers.Real) and not _is_numeric_str(v):
            raise _Bad(name, f"element {i} must be a number, found {v!r}"
                       + (" (a boolean is not a count of units)" if _is_bool(v) else ""))
        x = float(v)
        if math.isnan(x) or math.isinf(x):
            raise _Bad(name, f"element {i} is {x}; units must be finite (replace missing periods by 0)")
        if x < 0:
            raise _Bad(name, f"element {i} is negative ({x}); units must be >= 0 (net out returns before)")
        out.append(x)
    return out


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool) or (type(v).__module__ == "numpy" and type(v).__name__ in ("bool", "bool_"))
def _context_fields(raw: dict, n_sales: int, csv_encoded: bool) -> dict:
    """The optional context fields of a raw row, checked (None when absent): the context channels of the registry
    as it is now, each as long as `sales`; the date of the product's first sale; the label rule's `change` (never
    an input)."""
    out: dict[str, Any] = {}
    for ch in context_channels():
        values = None if _missing(raw.get(ch.name)) else _as_list(raw.get(ch.name), ch.name, csv_encoded)
        if values is not None and ch.nullable:  # null where the period has no value (price: nothing sold);
            values = [None if _missing(v) else _numbers([v], ch.name)[0] or None for v in values]  # 0: none known
        elif values is not None:
            values = _numbers(values, ch.name)
        if values is not None and len(values) != n_sales:
            raise _Bad(ch.name, f"{len(values)} periods, but sales has {n_sales}; they must cover the same periods")
        out[ch.name] = values
    try:
        out["first_sale"] = None if _missing(raw.get("first_sale")) else _cutoff(raw.get("first_sale"))
    except _Bad as b:
        raise _Bad("first_sale", b.reason) from None
    change = raw.get("change")
    out["change"] = None if _missing(change) or change == "" else _number(change, "change")
    return out


def _number(v: Any, name: str) -> float:
    """One finite number (a derived field such as `change`), else _Bad naming the field."""
    try:
        x = float(v) if not _is_bool(v) and isinstance(v, (numbers.Real, str)) else math.nan
    except ValueError:
        x = math.nan
    if not math.isfinite(x):
        raise _Bad(name, f"expected a finite number, found {v!r:.40}")
    return x


def _is_numeric_str(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        float(v)
        return True
    except ValueError:
        return False


def _text(value: Any, name: str) -> str:
    if _missing(value):  # None, NaN, pandas' NA (an empty cell of a "string" column)
        return ""
    if not isinstance(value, str):
        raise _Bad(name, f"expected text, found {type(value).__name__} {value!r:.40}")
    return value


def _cutoff(value: Any) -> str | None:
    if _missing(value) or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if hasattr(value, "date") and callable(value.date):  # pandas Timestamp
        return value.date().isoformat()
    s = str(value).strip()
    try:  # the whole string must parse: "2011-06-05-garbage" or "2011-06-05T99:99" are errors, not truncated
        return dt.date.fromisoformat(s).isoformat()
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(s).date().isoformat()
    except ValueError:
        raise _Bad("cutoff", f"expected an ISO date like 2011-06-05, found {value!r}") from None


def validate_record(raw: Any, *, source: str = "<records>", row: int | None = None, history: int | None = None,
                    rule: LabelRule | None = None, csv_encoded: bool = False,
                    required: Mapping[str, str] | None = None) -> dict:
    """Check one raw row and return the normalised record (see module docstring).

    Args:
        raw: a mapping with the record's fields (trendnlp.data.record_files.schema).
        source, row: where the row came from, for the error message.
        history: the longest allowed `sales` (the model's history length); None: no limit.
        rule: label rule used to derive `label` from `future_sales` when `label` is absent.
        csv_encoded: lists may arrive as JSON-encoded strings (CSV files).
        required: {channel: reason} of the channels the model reads (`channels.required_channels`); a record
            whose channel field is absent or null as a whole is refused with that reason. None: none required.
    Returns:
        the normalised record dict.
    Raises:
        RecordError naming source, row and field.

    >>> validate_record({"product_id": 7, "sales": [1, 2]})["product_id"]
    '7'
    """
    pid_raw = raw.get("product_id") if isinstance(raw, dict) else None
    nested = isinstance(pid_raw, (list, tuple, dict))  # an id is text or a number, never a container
    pid = None if nested or _missing(pid_raw) else str(pid_raw).strip()
    try:
        if not isinstance(raw, dict):
            raise _Bad("(row)", f"expected a JSON object / mapping, found {type(raw).__name__}")
        if nested:
            raise _Bad("product_id", f"expected text or a number, found {type(pid_raw).__name__} {pid_raw!r:.40}")
        if not pid:
            raise _Bad("product_id", "missing or empty; every record needs a product_id")
        rec: dict[str, Any] = {"product_id": pid}
        rec["title"] = _text(raw.get("title"), "title")
        rec["description"] = _text(raw.get("description"), "description")
        reviews = _as_list(raw.get("reviews"), "reviews", csv_encoded) or []
        for i, r in enumerate(reviews):
            if not isinstance(r, str):
                raise _Bad("reviews", f"element {i} must be text, found {type(r).__name__}")
        rec["reviews"] = reviews
        if "sales" not in raw or raw.get("sales") is None:
            raise _Bad("sales", "missing; expected a list of units per period, oldest first")
        sales = _as_list(raw["sales"], "sales", csv_encoded)
        if not sales:
            raise _Bad("sales", "empty; at least one period of units is needed")
        rec["sales"] = _numbers(sales, "sales")
        if history is not None and len(rec["sales"]) > history:
            raise _Bad("sales", f"history of {len(rec['sales'])} periods is longer than the model's {history}; "
                                f"keep the newest {history} periods")
        rec["cutoff"] = _cutoff(raw.get("cutoff"))
        freq = raw.get("freq")
        freq = "W" if _missing(freq) or freq == "" else str(freq)
        if freq not in FREQS:
            raise _Bad("freq", f"expected one of {list(FREQS)}, found {freq!r}")
        rec["freq"] = freq
        fut = _as_list(raw.get("future_sales"), "future_sales", csv_encoded)
        rec["future_sales"] = _numbers(fut, "future_sales") if fut else None
        label = raw.get("label")
        if _missing(label) or label == "":
            label = (rule or LabelRule()).label(rec["sales"], rec["future_sales"]) if rec["future_sales"] else None
        elif label not in LABELS:
            raise _Bad("label", f"unknown label {label!r}; expected one of {list(LABELS)}")
        rec["label"] = label
        rec.update(_context_fields(raw, len(rec["sales"]), csv_encoded))
        for name, reason in (required or {}).items():
            if rec[name] is None:  # read as zeros otherwise: a model input the record never had
                raise _Bad(name, reason)
        category = raw.get("category")
        rec["category"] = None if _missing(category) else _text(category, "category")
        return rec
    except _Bad as b:
        raise RecordError(source, row, b.field, b.reason, pid) from None


def validate_rows(rows: Iterable[tuple[int, dict | RecordError]], *, source: str, on_error: str = "raise",
                  history: int | None = None, rule: LabelRule | None = None, csv_encoded: bool = False,
                  report: ErrorReport | None = None, seen: Any = None,
                  required: Mapping[str, str] | None = None) -> Iterator[tuple[int, dict]]:
    """Validate (row, raw) pairs; raise on the first bad row or, with on_error='skip', add it to `report`.

    Duplicate (product_id, cutoff) pairs are bad rows too: each must be unique in one source. `seen` may be
    a memory-flat key set (data.record_files.keys.KeySet) for millions of rows; default a plain set.
    """
    for batch in validate_batches(([row] for row in rows), source=source, on_error=on_error,
                                  history=history, rule=rule, csv_encoded=csv_encoded, report=report, seen=seen,
                                  required=required):
        yield from batch


def validate_batches(batches: Iterable[list[tuple[int, dict | RecordError]]], *, source: str,
                     on_error: str = "raise", history: int | None = None, rule: LabelRule | None = None,
                     csv_encoded: bool = False, report: ErrorReport | None = None, seen: Any = None,
                     required: Mapping[str, str] | None = None) -> Iterator[list[tuple[int, dict]]]:
    """`validate_rows` over batches of rows (`iter_raw_batches`); yields each batch's valid (row, record) pairs,
    in order."""
    if on_error not in ("raise", "skip"):  # before the first batch is read
        raise ValueError(f"on_error must be 'raise' or 'skip', found {on_error!r}")
    seen = set() if seen is None else seen
    for rows in batches:
        yield validate_batch(rows, source=source, on_error=on_error, history=history, rule=rule,
                             csv_encoded=csv_encoded, report=report, seen=seen, required=required)


def validate_batch(rows: Iterable[tuple[int, dict | RecordError]], *, source: str, on_error: str = "raise",
                   history: int | None = None, rule: LabelRule | None = None, csv_encoded: bool = False,
                   report: ErrorReport | None = None, seen: Any = None,
                   required: Mapping[str, str] | None = None) -> list[tuple[int, dict]]:
    """The one validate loop: (row, raw) pairs -> the valid (row, record) pairs, in order.

    A bad row (or a RecordError the reader yielded in its place) raises with on_error='raise', or with 'skip'
    is added to `report`. `seen` holds the (product_id, cutoff) keys of earlier valid rows, a set or a
    memory-flat data.record_files.keys.KeySet: a key met again is a bad row; None: no duplicate check.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', found {on_error!r}")
    good = []
    for n, raw in rows:
        try:
            if isinstance(raw, RecordError):
                raise raw
            rec = validate_record(raw, source=source, row=n, history=history, rule=rule, csv_encoded=csv_encoded,
                                  required=required)
            key = (rec["product_id"], rec["cutoff"])
            if seen is not None and not _add_new(seen, key):
                raise RecordError(source, n, "product_id", f"duplicate (product_id, cutoff) = {key}; each must "
                                  "be unique in a file", rec["product_id"])
        except RecordError as err:
            if on_error == "raise":
                raise
            if report is not None:
                report.add(err)
            continue
        good.append((n, rec))
    return good


def _add_new(seen: Any, key: tuple) -> bool:
    """Add `key` to a set or KeySet; False when it was there (one lookup: a duplicate leaves the size)."""
    n = len(seen)
    seen.add(key)
    return len(seen) != n


def first_unlabelled(records: Iterable[dict]) -> dict | None:
    """The first normalised record without a label (neither `label` nor `future_sales`), or None."""
    return next((r for r in records if r["label"] is None), None)


def require_labels(where: str, n: int, unlabelled: dict | None,
                   need: str = "training and evaluation need labelled records") -> None:
    """ValueError naming `where` (the part and its file, e.g. "train records (train.parquet)") when the part has
    no records (`n`) or a record without a label: `unlabelled`, its first (`first_unlabelled`), or None.

    >>> require_labels("train records (t.jsonl)", 2, first_unlabelled([{"label": "rising"}, {"label": "stable"}]))
    """
    if n and unlabelled is None:
        return
    raise ValueError(f"{where}: " + (f"product_id={unlabelled['product_id']!r} cutoff={unlabelled['cutoff']} has "
                                     "neither `label` nor `future_sales`" if unlabelled else "none left") + f"; {need}")


def read_records(source: Any, *, on_error: str = "raise", history: int | None = None, rule: LabelRule | None = None,
                 report: ErrorReport | None = None, required: Mapping[str, str] | None = None) -> list[dict]:
    """Read and validate records from a path, a DataFrame, a dict or a list of dicts.

    Args:
        source: path to .jsonl/.csv/.parquet, a pandas DataFrame, one record dict or a list of them.
        on_error: "raise" (default) stops at the first bad row; "skip" leaves it out and adds it to `report`.
        history: longest allowed sales history.
        rule: label rule for records that carry only future_sales.
        report: collects skipped rows.
        required: channels every record must carry, as for `validate_record` (a model's `record_rules()`).
    Returns:
        list of normalised record dicts.

    >>> len(read_records([{"product_id": "a", "sales": [1, 0, 2]}]))
    1
    """
    rows, name, csv_encoded = _rows_of(source)
    return [rec for _, rec in validate_rows(rows, source=name, on_error=on_error, history=history, rule=rule,
                                            csv_encoded=csv_encoded, report=report, required=required)]


def read_records_aligned(source: Any, *, on_error: str = "raise", history: int | None = None,
                         rule: LabelRule | None = None, report: ErrorReport | None = None,
                         required: Mapping[str, str] | None = None) -> tuple[list[dict], list[int], int]:
    """Like `read_records`, plus where each valid record sits in the input, so results can be aligned with it.

    Returns:
        (records, positions (0-based input row of each record), number of input rows)

    >>> recs, pos, n = read_records_aligned([{"product_id": "a", "sales": [1]}, {"sales": [2]}], on_error="skip")
    >>> pos, n
    ([0], 2)
    """
    rows, name, csv_encoded = _rows_of(source)
    rows = list(rows)
    position = {n: i for i, (n, _) in enumerate(rows)}
    good = list(validate_rows(rows, source=name, on_error=on_error, history=history, rule=rule,
                              csv_encoded=csv_encoded, report=report, required=required))
    return [rec for _, rec in good], [position[n] for n, _ in good], len(rows)


def _rows_of(source: Any) -> tuple[Iterable, str, bool]:
    if isinstance(source, (str, Path)):
        return iter_raw_rows(source), str(source), detect_format(source) == "csv"
    if isinstance(source, dict):
        return [(1, source)], "<record>", False
    if hasattr(source, "to_dict") and hasattr(source, "columns"):
        return iter_frame_rows(_ids_from_index(source)), "<DataFrame>", True
    if isinstance(source, (list, tuple)):
        return list(enumerate(source, start=1)), "<records>", False
    raise TypeError(f"records must be a path, a dict, a list of dicts or a pandas DataFrame, found {type(source).__name__}")


def _ids_from_index(df: Any) -> Any:
    """A DataFrame whose ids are its index (`df.set_index("product_id")`) reads as if they were the column; a
    frame without either is one error saying where the ids should be, instead of one per row."""
    if "product_id" in df.columns or len(df) == 0:
        return df
    if "product_id" in list(df.index.names):
        return df.reset_index(level="product_id")
    raise RecordError("<DataFrame>", None, "product_id", f"no `product_id` column (columns: {list(df.columns)[:8]}) "
                      f"and the index is named {df.index.name!r}; if the index holds the ids, name it: "
                      "df.rename_axis('product_id'), or make them a column: df.reset_index(names='product_id')")


def load_records(source: Any, *, on_error: str = "raise", history: int | None = None, rule: LabelRule | None = None,
                 errors_path: str | Path | None = None):
    """Validated records as a `datasets.Dataset` (plus the report of skipped rows, written to errors_path).

    Returns:
        (dataset, report)
    """
    import datasets

    report = ErrorReport()
    recs = read_records(source, on_error=on_error, history=history, rule=rule, report=report)
    if errors_path is not None and (len(report) or on_error == "skip"):
        report.write(errors_path)
    return datasets.Dataset.from_list(recs, features=record_features()) if recs else datasets.Dataset.from_dict(
        {k: [] for k in record_fields()}, features=record_features()), report


def record_features():
    """The `datasets.Features` of normalised records (trendnlp.data.record_files.schema.arrow_features)."""
    from trendnlp.data.record_files.schema import arrow_features

    return arrow_features()
