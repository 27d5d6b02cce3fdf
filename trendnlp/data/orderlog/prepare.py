"""From order logs to product records (docs/data.md): one record per (product, cutoff), without look-ahead.

Pipeline (P products, T complete periods, C cutoffs), in memory that grows with one chunk of records:
    sales rows   --checked in batches, aggregated by DuckDB (data.aggregate)-->  units and channels (P, T)
    (P, T)       --a chunk of products at a time (data.windows)-->  history totals, filter, records (Arrow)
    text rows    --cumulative mode per product-->  title / description as of each cutoff (data.lookups)
    review rows  --sorted per product-->  the newest `max_reviews` dated on or before each cutoff
    records      --> a file, one row group (or a block of lines) per chunk; or a list, sorted by cutoff
Every window, text and review lookup is bounded by the cutoff's period index, and a product enters at a
cutoff only once it has sold at or before it, so nothing dated after a cutoff reaches its record except
`future_sales` (and the label derived from it). With a shard (`num_shards`, `shard_index`) only the products
whose stable hash falls in it are windowed; the shards' records together are the one-process records.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trendnlp.errors import ConfigError, DataError
from trendnlp.labels import LabelRule
from trendnlp.options import MAX_PERIODS
from trendnlp.data.orderlog.aggregate import OrderLog, Shard, read_log
from trendnlp.data.record_files.channels import context_channels
from trendnlp.data.orderlog.lookups import ReviewsAsOf, TextsAsOf
from trendnlp.data.record_files.io import ErrorReport
from trendnlp.data.record_files.schema import FREQS
from trendnlp.data.record_files.summary import RecordSummary, SummaryCounter, summarize  # noqa: F401 (re-exported)
from trendnlp.data.orderlog.tables import (SkippedRows, parse_times, parse_units, product_ids, read_table,  # noqa: F401
                                  require_values)

SERIES_STARTS = ("data", "first_sale")


@dataclass
class PrepareResult:
    """Records built by `prepare`, with what a user needs to check them.

    `cutoffs` lists every candidate cutoff (oldest first), also those where no product passed the filter;
    `dropped_partial` is the end date of the incomplete last period that was left out, if any. With `out`
    the records went to that file and `records` is empty; `n_records` and `counts` describe them either way.
    """

    records: list[dict]
    cutoffs: list[str]
    n_products: int
    dropped_partial: str | None = None
    notes: list[str] = field(default_factory=list)
    errors: ErrorReport = field(default_factory=ErrorReport)  # input rows skipped under on_error="skip"
    counts: RecordSummary | None = None  # the records' summary (counted as they were written)
    out: str | None = None  # the records file, when written there

    def __len__(self) -> int:
        return self.counts.n_records if self.counts is not None else len(self.records)

    def summary(self) -> str:
        """A printable table: counts, cutoff range, label shares, then the notes (cleaning, dropped period)."""
        lines = [str(self.counts if self.counts is not None else summarize(self.records))]
        if self.dropped_partial:
            lines.append(f"dropped the partial last period ending {self.dropped_partial}")
        lines += self.notes
        return "\n".join(lines)


def prepare(sales: Any, *, product_col: str = "product_id", time_col: str = "timestamp", units_col: str = "units",
            texts: Any = None, reviews: Any = None, title_col: str | None = "title",
            description_col: str | None = "description", review_col: str = "text", freq: str = "W",
            history: int = 26, horizon: int = 4, stride: int = 1, min_history_units: float = 10.0,
            max_reviews: int = 5, series_start: str = "data", rule: LabelRule | None = None,
            as_of: str | None = None, progress: bool = True, on_error: str = "raise", out: str | Path | None = None,
            num_shards: int = 1, shard_index: int = 0, **channel_columns: str | None) -> PrepareResult:
    """Slide a cutoff over period ends and build one leakage-safe record per (product, cutoff).

    Args:
        sales: order lines or product-period rows: a DataFrame or a .csv / .parquet / .jsonl path.
        product_col, time_col, units_col: column names in `sales` (and in `texts` / `reviews`, where
            `product_id` and `timestamp` are accepted too).
        **channel_columns: the log columns of the optional channels (trendnlp.data.record_files.channels), each record
            getting the channel over its `sales` periods (None without the column):
            price_col: price (finite, >= 0) -> `price`, the units-weighted average over the lines with a price
                (0 or empty: no price known, left out of the average; None where no line has one);
            invoice_col: invoice id -> `orders`, distinct invoices containing the product;
            customer_col: customer id -> `customers`, distinct customers (rows without an id not counted).
        texts: optional product text table (product, `title_col`, `description_col`, optional time column).
            With a time column the text is the most frequent (title, description) seen at or before the
            cutoff, ties going to the most recent; without one it is treated as known at every cutoff.
        reviews: optional table (product, time, `review_col`); a record gets the reviews dated on or before
            its cutoff, newest first, at most `max_reviews`.
        freq: period length, "W" (weeks ending Sunday), "D" or "M".
        history: periods of sales up to and including the cutoff.
        horizon: periods after the cutoff stored in `future_sales`; a cutoff needs all of them in the data.
        stride: periods between consecutive cutoffs, counted from the earliest one.
        min_history_units: keep a record only if its history sums to at least this many units.
        max_reviews: reviews kept per record.
        series_start: "data" fills the whole window with observed units (0 where the product did not sell,
            the benchmark's convention); "first_sale" starts each history at the product's first sale, so
            young products get shorter `sales` lists.
        rule: label rule (default `LabelRule()`).
        as_of: None builds training records (every cutoff with a complete future). A date (or "latest": the
            last complete period of the log) builds one record per product at the last period ending on or
            before it, with no `future_sales` and no `label`, by the same windowing as training records;
            `horizon` and `stride` do not apply. Histories that would start before the log are shorter.
        progress: show progress bars on stderr (reading, aggregating, windowing).
        on_error: "raise" stops at the first bad row of a table; "skip" leaves every bad row out and lists it
            (file, line, column, reason) in the result's `errors` report.
        out: write the records to this file (.parquet, .jsonl or .csv) a chunk of products at a time, rows by
            product_id then cutoff, instead of returning them: memory then grows with one chunk, not with the
            number of records.
        num_shards, shard_index: build only the records of the products whose stable hash (blake2b of the
            id) modulo `num_shards` is `shard_index`; the shards' records together are the one-process records.
    Returns:
        a PrepareResult; `.records` are normalised record dicts sorted by cutoff, then product_id (empty with
        `out`).
    Raises:
        RecordError naming the file, row and column of bad input; ValueError for bad options.

    >>> df = pd.DataFrame({"product_id": ["a"] * 3, "timestamp": ["2024-01-07", "2024-01-14", "2024-01-21"],
    ...                    "units": [5, 5, 9]})
    >>> prepare(df, history=2, horizon=1, min_history_units=1, progress=False).records[0]["sales"]
    [5.0, 5.0]
    >>> rec = prepare(df, history=2, min_history_units=1, as_of="latest", progress=False).records[0]
    >>> rec["sales"], rec["cutoff"], "label" in rec, "future_sales" in rec, rec["first_sale"]
    ([5.0, 9.0], '2024-01-21', False, False, '2024-01-07')
    """
    rule = rule or LabelRule()
    _check_options(freq, history, horizon, stride, min_history_units, max_reviews, series_start)
    history, horizon, stride = int(history), int(horizon), int(stride)
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', found {on_error!r}")
    shard = Shard(shard_index, num_shards) if (num_shards, shard_index) != (1, 0) else None
    hide = None if progress else True  # None: no bar when stderr is not a terminal (logs, pipes): errors stay one line
    report = ErrorReport()
    with tqdm(desc="reading and aggregating sales", disable=hide, unit=" rows", unit_scale=True, leave=False) as bar:
        log = read_log(sales, product_col, time_col, units_col, _channel_columns(channel_columns), freq, report,
                       on_error, shard=shard, bar=bar)
    T = log.units.shape[1]
    if as_of is None or T == 0:
        cut = np.arange(history - 1, T - horizon, stride) if as_of is None else np.zeros(0, int)
        if len(cut) == 0:
            need = (f"at least history + horizon = {history + horizon} are needed for one cutoff; lower "
                    "--history / --horizon or give a longer log") if as_of is None else \
                "at least 1 is needed to build records as of a date; give a longer log"
            raise DataError(f"{log.source}: column {time_col!r}: the dates span {T} complete {freq} periods"
                            f"{_partial_note(log)}, but {need}")
    else:
        cut, horizon = np.array([_as_of_period(log, as_of)]), 0  # inference: no future, no label
    cutoffs = log.grid.end_dates(cut)
    texts = TextsAsOf(texts, log.grid, product_col, time_col, title_col, description_col, report, on_error)
    reviews = ReviewsAsOf(reviews, log.grid, product_col, time_col, review_col, max_reviews, report, on_error)
    records, counts = _write(log, cut, out, history=history, horizon=horizon, series_start=series_start,
                             min_history_units=min_history_units, rule=rule, texts=texts, reviews=reviews,
                             freq=freq, hide=hide)
    report.errors.sort(key=lambda e: (e.source, e.row or 0))  # in file order, whichever check found them
    notes = []
    if as_of is not None:
        notes.append(f"as of {cutoffs[0]}: {counts.n_records:,} products with at least {min_history_units:g} units "
                     f"in the {history} {freq} periods up to it (no future_sales, no label)")
    if shard is not None:
        notes.append(f"shard {shard.index} of {shard.count}: the products whose stable hash falls in it")
    if len(report):
        notes.append(f"skipped {len(report):,} bad input rows (on_error=skip)")
    return PrepareResult(records, cutoffs, int((log.first < T).sum()), log.dropped, notes, errors=report,
                         counts=counts, out=None if out is None else str(out))


def _write(log: OrderLog, cut: np.ndarray, out, *, hide, **window) -> tuple[list[dict], RecordSummary]:
    """Window the records a chunk of products at a time into `out` (or, without it, a sorted list)."""
    from trendnlp.data.record_files.io import RecordFileWriter
    from trendnlp.data.record_files.schema import arrow_features
    from trendnlp.data.orderlog.windows import AS_OF_DROPPED, record_tables

    drop = AS_OF_DROPPED if not window["horizon"] else ()
    counter, kept = SummaryCounter(), []
    with tqdm(desc="building records", total=len(log.units), disable=hide, unit=" products", leave=False) as bar:
        tables = record_tables(log, cut, schema=arrow_features().arrow_schema, bar=bar, **window)
        if out is None:
            for table in tables:
                counter.add(table)
                kept.append(table.drop_columns(list(drop)))
        else:
            with RecordFileWriter(out, drop=drop) as writer:
                for table in tables:
                    counter.add(table)
                    writer.write(table)
                    bar.set_postfix(records=f"{counter.n:,}")
    if out is not None or not kept:
        return [], counter.result()
    import pyarrow as pa

    table = pa.concat_tables(kept).sort_by([("cutoff", "ascending"), ("product_id", "ascending")])
    return table.to_pylist(), counter.result()


def _channel_columns(given: dict[str, str | None]) -> dict[str, str]:
    """Channel name -> log column, from prepare's `*_col` keyword options (unknown options are a TypeError)."""
    by_option = {c.column: c for c in context_channels() if c.column}
    unknown = sorted(set(given) - set(by_option))
    if unknown:
        raise TypeError(f"prepare() got unexpected keyword argument(s) {unknown}; channel columns are "
                        f"{sorted(by_option)}")
    return {by_option[k].name: v for k, v in given.items() if v}


def _as_of_period(log: OrderLog, as_of: Any) -> int:
    """Period index of the last complete period ending on or before `as_of` ("latest": the log's last one)."""
    T, grid = log.units.shape[1], log.grid
    if T == 0:
        raise DataError(f"{log.source}: the dates span 0 complete {grid.code[0]} periods{_partial_note(log)}, but at "
                        "least 1 is needed to build records as of a date; give a longer log")
    last = grid.end_dates(np.array([T - 1]))[0]
    if str(as_of).strip().lower() in ("latest", "last", ""):
        return T - 1
    try:
        day = pd.Timestamp(str(as_of)).normalize()
    except ValueError:
        raise ValueError(f"--as-of: expected a date like 2011-12-04 or 'latest', found {as_of!r}") from None
    k = int(pd.Period(day, freq=grid.code).ordinal) - grid.p0
    if day < pd.Period(ordinal=grid.p0 + k, freq=grid.code).end_time.normalize():
        k -= 1  # the period containing as_of has not ended by then: use the one before
    if k > T - 1:
        raise ValueError(f"--as-of {as_of}: the log's last complete period ends {last}; periods after it are not in "
                         f"the data (use --as-of {last} or leave --as-of out)")
    if k < 0:
        raise ValueError(f"--as-of {as_of}: before the end of the log's first period "
                         f"({grid.end_dates(np.array([0]))[0]})")
    return k


def _partial_note(log: OrderLog) -> str:
    return f" (the last, partial period ending {log.dropped} is left out)" if log.dropped else ""


def _check_options(freq, history, horizon, stride, min_history_units, max_reviews, series_start) -> None:
    if freq not in FREQS:
        raise ValueError(f"freq must be one of {list(FREQS)}, found {freq!r}")
    for name, value in (("history", history), ("horizon", horizon), ("stride", stride), ("max_reviews", max_reviews)):
        low = 0 if name == "max_reviews" else 1
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= MAX_PERIODS:
            raise ConfigError(f"{name} must be a whole number in [{low}, {MAX_PERIODS:,}], found {value!r}")
    if isinstance(min_history_units, bool) or not 0 <= min_history_units < np.inf:  # NaN fails too
        raise ConfigError(f"min_history_units must be a finite number >= 0, found {min_history_units!r}")
    if series_start not in SERIES_STARTS:
        raise ValueError(f"series_start must be one of {list(SERIES_STARTS)}, found {series_start!r}")
