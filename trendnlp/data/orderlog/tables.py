"""Input tables of `prepare` (order log, product texts, reviews): read only the needed columns, and name file,
row and column in every error (or, under on_error="skip", report the row and leave it out).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from trendnlp.data.record_files.channels import CHANNELS
from trendnlp.data.record_files.io import ErrorReport, RecordError, detect_format, unreadable_as_data_error
from trendnlp.errors import DataError


def read_table(source: Any, what: str, wanted: dict[str, list[str]],
               optional: tuple[str, ...] = ()) -> tuple[pd.DataFrame, str, int]:
    """Load the wanted columns of a DataFrame or .csv/.parquet/.jsonl file, renamed to their logical names.

    Args:
        source: DataFrame or path. A DataFrame may carry `attrs["source"]` and `attrs["row_offset"]` (and an
            integer index of original row positions) so that errors point into the file it came from.
        what: table name for messages ("sales", "texts", "reviews").
        wanted: logical name -> candidate column names (first present wins; an empty list skips it).
        optional: logical names that may be absent.
    Returns:
        (frame with logical column names and an integer row index, source name, offset from index to row number)
    """
    src, off, fmt, chosen = _choose_columns(source, what, wanted, optional)
    if fmt is None:
        df = _frame_columns(source, chosen)
    else:
        with unreadable_as_data_error(src, what):
            df = _read_columns(source, fmt, list(chosen.values()))
    return df.rename(columns={v: k for k, v in chosen.items()}), src, off


def iter_table(source: Any, what: str, wanted: dict[str, list[str]], optional: tuple[str, ...] = (),
               rows: int = 1_000_000) -> tuple[str, int, Iterator[pd.DataFrame]]:
    """`read_table` a batch of `rows` rows at a time, so that a table larger than memory can be streamed.

    Each batch's index holds the rows' positions in the whole table, so errors still name the file's line.

    Returns:
        (source name, offset from index to row number, the batches)

    >>> src, off, batches = iter_table(pd.DataFrame({"a": [1, 2, 3]}), "sales", {"x": ["a"]}, rows=2)
    >>> [b["x"].tolist() for b in batches]
    [[1, 2], [3]]
    """
    src, off, fmt, chosen = _choose_columns(source, what, wanted, optional)
    names = {v: k for k, v in chosen.items()}

    def batches() -> Iterator[pd.DataFrame]:
        if fmt is None:
            df = _frame_columns(source, chosen)
            for start in range(0, len(df), rows):
                yield df.iloc[start: start + rows].rename(columns=names)
            return
        start = 0
        with unreadable_as_data_error(src, what):
            for df in _read_column_batches(source, fmt, list(chosen.values()), rows):
                df.index = pd.RangeIndex(start, start + len(df))
                start += len(df)
                yield df.rename(columns=names)

    return src, off, batches()


def _choose_columns(source: Any, what: str, wanted: dict[str, list[str]], optional: tuple[str, ...]):
    """(source name, row offset, file format or None for a DataFrame, logical name -> column)."""
    if isinstance(source, pd.DataFrame):
        src, fmt = source.attrs.get("source", f"<{what} DataFrame>"), None
        off = source.attrs.get("row_offset", 1)
        columns = list(source.columns)
    else:
        src, fmt = str(source), detect_format(source)
        off = 2 if fmt == "csv" else 1  # CSV errors name the line, the header being line 1
        with unreadable_as_data_error(src, what):
            columns = _file_columns(source, fmt)
    chosen = {}
    for name, candidates in wanted.items():
        hit = next((c for c in candidates if c in columns), None)
        if hit is not None:
            chosen[name] = hit
        elif candidates and name not in optional:
            flag = f"--{name}-col" if name in ("product", "time", "units") else getattr(CHANNELS.get(name), "cli_flag",
                                                                                          None)
            hint = f"; name the right one with {flag}" if flag else ""
            raise RecordError(src, None, candidates[0], f"column not found in the {what} table; its columns are "
                              f"{columns}{hint}")
    return src, off, fmt, chosen


def _frame_columns(df: pd.DataFrame, chosen: dict[str, str]) -> pd.DataFrame:
    df = df[list(chosen.values())]
    if not pd.api.types.is_integer_dtype(df.index) or not df.index.is_unique:
        df = df.reset_index(drop=True)
    return df


def _read_column_batches(path: Any, fmt: str, cols: list[str], rows: int) -> Iterator[pd.DataFrame]:
    if fmt == "csv":  # strings everywhere, as in _read_columns
        with pd.read_csv(path, usecols=cols, dtype=str, encoding="utf-8", chunksize=rows) as reader:
            yield from reader
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=rows, columns=cols):
            yield batch.to_pandas()
    else:
        with pd.read_json(path, lines=True, dtype=False, encoding="utf-8", chunksize=rows) as reader:
            for df in reader:
                yield df.reindex(columns=cols)


def _read_columns(path: Any, fmt: str, cols: list[str]) -> pd.DataFrame:
    if fmt == "csv":  # strings everywhere: ids keep leading zeros, numbers are checked row by row below
        return pd.read_csv(path, usecols=cols, dtype=str, encoding="utf-8")
    if fmt == "parquet":
        return pd.read_parquet(path, columns=cols)
    return pd.read_json(path, lines=True, dtype=False, encoding="utf-8")[cols]


def _file_columns(path: Any, fmt: str) -> list[str]:
    import pyarrow.parquet as pq

    if fmt == "csv":
        return list(pd.read_csv(path, nrows=0, encoding="utf-8").columns)
    if fmt == "parquet":
        return list(pq.read_schema(path).names)
    return list(pd.read_json(path, lines=True, nrows=1).columns)


class SkippedRows:
    """Bad rows of one input table under on_error="skip": each goes to `report` (file, line, column, reason)
    and is marked in `mask` (positional), so the caller drops them all at once instead of stopping at the first."""

    def __init__(self, n: int, report: ErrorReport):
        self.mask, self.report = np.zeros(n, dtype=bool), report

    def add(self, df: pd.DataFrame, bad: np.ndarray, src: str, off: int, col: str, reason: str,
            values: pd.Series) -> None:
        for pos in np.nonzero(bad & ~self.mask)[0]:  # a row is reported once, for its first problem
            self.report.add(RecordError(src, int(df.index[pos]) + off, col, f"{reason}, found {values.iloc[pos]!r}"))
        self.mask |= bad

    def apply(self, *arrays):
        """The positional arrays (numpy or Series) without the skipped rows."""
        keep = ~self.mask
        return [a[keep] if isinstance(a, np.ndarray) else a[keep].reset_index(drop=True) for a in arrays]


def _fail(df: pd.DataFrame, bad: np.ndarray, src: str, off: int, col: str, reason: str, values: pd.Series,
          skip: SkippedRows | None = None) -> None:
    if skip is not None:
        skip.add(df, bad, src, off, col, reason, values)
        return
    pos = int(bad.argmax())
    more = f" ({int(bad.sum()) - 1} more rows like it)" if bad.sum() > 1 else ""
    raise RecordError(src, int(df.index[pos]) + off, col, f"{reason}, found {values.iloc[pos]!r}{more}")


def parse_times(s: pd.Series, src: str, off: int, col: str, skip: SkippedRows | None = None) -> pd.Series:
    """Timestamps as naive datetimes (one time zone: dropped, wall time kept; mixed UTC offsets: read as UTC);
    an unparsable or missing one is an error
    (or, with `skip`, a reported row left as NaT)."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        raise RecordError(src, None, col, f"expected dates like 2011-06-05 or 2011-06-05 14:30, found numbers "
                          f"({s.iloc[0]!r}...); convert them to dates first")
    if pd.api.types.is_datetime64_any_dtype(s):
        t = s
    else:
        try:
            t = pd.to_datetime(s, errors="coerce")  # fast path: one format, inferred from the first value
            retry = (t.isna() & s.notna()).to_numpy()
            if retry.any():  # mixed formats: parse the rest one by one
                t[retry] = pd.to_datetime(s[retry], errors="coerce", format="mixed")
        except (ValueError, TypeError) as e:  # e.g. mixed time zones
            t = _as_utc(s, src, col, e)
        if not pd.api.types.is_datetime64_any_dtype(t):  # mixed UTC offsets: pandas leaves plain objects
            t = _as_utc(s, src, col, None)
    if getattr(t.dt, "tz", None) is not None:
        t = t.dt.tz_localize(None)
    bad = t.isna().to_numpy()
    if bad.any():
        _fail(s.to_frame(), bad, src, off, col, "missing or unparsable timestamp; expected a date like 2011-06-05", s,
              skip)
    return t


def _as_utc(s: pd.Series, src: str, col: str, err: Exception | None) -> pd.Series:
    """Timestamps with mixed UTC offsets, converted to UTC (naive); a column that still does not parse is an
    error naming it."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = pd.to_datetime(s, errors="coerce", utc=True, format="mixed")
    except (ValueError, TypeError) as e:
        raise RecordError(src, None, col, f"could not read the timestamps ({' '.join(str(err or e).split())[:120]}); "
                          "write them as ISO dates like 2011-06-05 or 2011-06-05T14:30+01:00") from None
    return t.dt.tz_convert("UTC")


def parse_units(s: pd.Series, src: str, off: int, col: str, what: str = "units",
                skip: SkippedRows | None = None, missing_ok: bool = False) -> np.ndarray:
    """Finite, non-negative numbers as float64; anything else is an error naming the first bad row (or, with
    `skip`, reported rows left as NaN). With `missing_ok` an empty cell is NaN, not an error (prices)."""
    if pd.api.types.is_bool_dtype(s):
        is_bool = s.notna().to_numpy()
    elif s.dtype == object:
        is_bool = s.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
    else:
        is_bool = np.zeros(len(s), dtype=bool)
    # pandas would read True / False as 1 / 0: a boolean is not a count of units
    x = np.where(is_bool, np.nan, pd.to_numeric(s.where(~is_bool), errors="coerce").to_numpy(dtype=float,
                                                                                            na_value=np.nan))
    frame = s.to_frame()
    for bad, reason in ((is_bool, f"{what} must be a number, not a boolean"),
                        (np.isnan(x) & s.notna().to_numpy(), f"{what} must be a number"),
                        (s.isna().to_numpy() & (not missing_ok), f"missing {what}; use 0 for none"),
                        (np.isinf(x), f"{what} must be finite"),
                        (x < 0, f"{what} must be >= 0 (net out returns and cancellations before preparing)")):
        if bad.any():
            _fail(frame, bad, src, off, col, reason, s, skip)
    return x


def require_values(n_rows: int, n_values: int, src: str, col: str, channel) -> None:
    """A channel's log column must hold a value on some of its `n_rows` rows (a price > 0, an id; `n_values` have
    one): else every record would get a zero (or null) channel, which is an error naming the column and option."""
    if n_rows and not n_values:
        flag = channel.cli_flag
        none = " (a price of 0 counts as none)" if channel.nullable else ""
        raise DataError(f"{src}: column {col!r} ({flag}, the `{channel.name}` channel) is empty on every one of its "
                        f"{n_rows:,} rows{none}, so no record would carry `{channel.name}`; name a column that "
                        f"holds them with {flag}, or leave {flag} out")


def text_column(df: pd.DataFrame, name: str) -> np.ndarray:
    """A text column as an object array of stripped strings ("" where missing or absent)."""
    if name not in df:
        return np.full(len(df), "", dtype=object)
    return df[name].astype("string").str.strip().fillna("").to_numpy(dtype=object)


def product_ids(df: pd.DataFrame, src: str, off: int, col: str, skip: "SkippedRows | None" = None) -> np.ndarray:
    ids = df["product"].astype("string").str.strip()
    missing = (ids.isna() | (ids == "")).to_numpy()
    if missing.any() and skip is not None:
        skip.add(df, missing, src, off, col, "missing product id; every row needs one", df["product"])
    elif missing.any():
        row = int(df.index[missing.argmax()]) + off
        raise RecordError(src, row, col, f"missing product id ({int(missing.sum())} such rows); every row needs one")
    return ids.to_numpy(dtype=object)


def drop_bad_rows(df: pd.DataFrame, src: str, off: int, product_col: str, time_col: str, report, on_error: str):
    """Texts / reviews under on_error="skip": rows without a product id or with a bad timestamp are reported and
    dropped (the original index is kept, so later messages still name the file's line)."""
    if on_error != "skip" or report is None:
        return df
    skip = SkippedRows(len(df), report)
    product_ids(df, src, off, product_col, skip)
    if "time" in df:
        parse_times(df["time"], src, off, time_col, skip)
    return df[~skip.mask]
