"""From order logs to product records (DESIGN §3): one record per (product, cutoff), without look-ahead.

Pipeline (P products, T complete periods, C cutoffs, N kept records):
    sales rows   --bincount-->  units (P, T)  --cumsum-->  history totals (P, C)  --filter-->  N (product, cutoff)
    text rows    --cumulative mode per product-->  title / description as of each cutoff
    review rows  --sorted per product-->  the newest `max_reviews` dated on or before each cutoff
Every window, text and review lookup is bounded by the cutoff's period index, and a product enters at a
cutoff only once it has sold at or before it, so nothing dated after a cutoff reaches its record except
`future_sales` (and the label derived from it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trendnlp.errors import ConfigError, DataError
from trendnlp.labels import LabelRule
from trendnlp.options import MAX_PERIODS
from trendnlp.data.channels import CHANNELS, context_channels
from trendnlp.data.lookups import reviews_as_of, texts_as_of
from trendnlp.data.records import FREQS, ErrorReport, RecordError
from trendnlp.data.summary import RecordSummary, summarize  # noqa: F401 (re-exported)
from trendnlp.data.tables import (SkippedRows, parse_times, parse_units, product_ids, read_table,  # noqa: F401
                                  require_values)

PERIOD_CODES = {"W": "W-SUN", "D": "D", "M": "M"}  # weeks end on Sunday, as in the Online Retail benchmark
SERIES_STARTS = ("data", "first_sale")


@dataclass
class PrepareResult:
    """Records built by `prepare`, with what a user needs to check them.

    `cutoffs` lists every candidate cutoff (oldest first), also those where no product passed the filter;
    `dropped_partial` is the end date of the incomplete last period that was left out, if any.
    """

    records: list[dict]
    cutoffs: list[str]
    n_products: int
    dropped_partial: str | None = None
    notes: list[str] = field(default_factory=list)
    errors: ErrorReport = field(default_factory=ErrorReport)  # input rows skipped under on_error="skip"

    def __len__(self) -> int:
        return len(self.records)

    def summary(self) -> str:
        """A printable table: counts, cutoff range, label shares, then the notes (cleaning, dropped period)."""
        lines = [str(summarize(self.records))]
        if self.dropped_partial:
            lines.append(f"dropped the partial last period ending {self.dropped_partial}")
        lines += self.notes
        return "\n".join(lines)


def prepare(sales: Any, *, product_col: str = "product_id", time_col: str = "timestamp", units_col: str = "units",
            texts: Any = None, reviews: Any = None, title_col: str | None = "title",
            description_col: str | None = "description", review_col: str = "text", freq: str = "W",
            history: int = 26, horizon: int = 4, stride: int = 1, min_history_units: float = 10.0,
            max_reviews: int = 5, series_start: str = "data", rule: LabelRule | None = None,
            as_of: str | None = None, progress: bool = True, on_error: str = "raise",
            **channel_columns: str | None) -> PrepareResult:
    """Slide a cutoff over period ends and build one leakage-safe record per (product, cutoff).

    Args:
        sales: order lines or product-period rows: a DataFrame or a .csv / .parquet / .jsonl path.
        product_col, time_col, units_col: column names in `sales` (and in `texts` / `reviews`, where
            `product_id` and `timestamp` are accepted too).
        **channel_columns: the log columns of the optional channels (trendnlp.data.channels), each record
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
            the §6 benchmark convention); "first_sale" starts each history at the product's first sale, so
            young products get shorter `sales` lists.
        rule: label rule (default `LabelRule()`).
        as_of: None builds training records (every cutoff with a complete future). A date (or "latest": the
            last complete period of the log) builds one record per product at the last period ending on or
            before it, with no `future_sales` and no `label`, by the same windowing as training records;
            `horizon` and `stride` do not apply. Histories that would start before the log are shorter.
        progress: show a progress bar on stderr.
        on_error: "raise" stops at the first bad row of a table; "skip" leaves every bad row out and lists it
            (file, line, column, reason) in the result's `errors` report.
    Returns:
        a PrepareResult; `.records` are normalised record dicts sorted by cutoff, then product_id.
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
    # disable=None: no bar when stderr is not a terminal (logs, pipes), so an error stays one line there
    with tqdm(desc="reading sales", total=None, disable=None if progress else True, leave=False,
              unit="record") as bar:
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', found {on_error!r}")
        report = ErrorReport()
        log = _read_log(sales, product_col, time_col, units_col, _channel_columns(channel_columns), freq, report,
                        on_error)
        T = log.units.shape[1]

        bar.set_description("choosing cutoffs")
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
        ci, p = _active(log, cut, history, min_history_units)
        records = _build_records(log, p, cut[ci], history=history, horizon=horizon, series_start=series_start,
                                 rule=rule, texts=texts, reviews=reviews, product_col=product_col, time_col=time_col,
                                 title_col=title_col, description_col=description_col, review_col=review_col,
                                 max_reviews=max_reviews, freq=freq, bar=bar, report=report,
                                 on_error=on_error)
    report.errors.sort(key=lambda e: (e.source, e.row or 0))  # in file order, whichever check found them
    notes = []
    if as_of is not None:
        notes.append(f"as of {cutoffs[0]}: {len(records):,} products with at least {min_history_units:g} units in "
                     f"the {history} {freq} periods up to it (no future_sales, no label)")
    if len(report):
        notes.append(f"skipped {len(report):,} bad input rows (on_error=skip)")
    return PrepareResult(records, cutoffs, int((log.first < T).sum()), log.dropped, notes, errors=report)


@dataclass
class _Log:
    """An order log as units per (product, complete period), with what every window lookup needs."""

    grid: "_Grid"
    units: np.ndarray  # (P, T) units per product and period, 0 where nothing sold
    first: np.ndarray  # (P,) first period with a sale (T: never)
    dropped: str | None  # end date of the incomplete last period that was left out
    source: str
    # context channel -> (P, T) per product, or (1, T) for a shop total; absent: its column was not given
    channels: dict[str, np.ndarray] = field(default_factory=dict)


def _channel_columns(given: dict[str, str | None]) -> dict[str, str]:
    """Channel name -> log column, from prepare's `*_col` keyword options (unknown options are a TypeError)."""
    by_option = {c.column: c for c in context_channels() if c.column}
    unknown = sorted(set(given) - set(by_option))
    if unknown:
        raise TypeError(f"prepare() got unexpected keyword argument(s) {unknown}; channel columns are "
                        f"{sorted(by_option)}")
    return {by_option[k].name: v for k, v in given.items() if v}


def _read_log(sales, product_col, time_col, units_col, columns: dict[str, str], freq, report: ErrorReport,
              on_error: str) -> _Log:
    df, src, off = read_table(sales, "sales", {"product": [product_col], "time": [time_col], "units": [units_col],
                                               **{name: [col] for name, col in columns.items()}})
    if len(df) == 0:
        raise RecordError(src, None, units_col, "the sales table has no rows")
    skip = SkippedRows(len(df), report) if on_error == "skip" else None
    ids = product_ids(df, src, off, product_col, skip)
    ts = parse_times(df["time"], src, off, time_col, skip)
    units = parse_units(df["units"], src, off, units_col, skip=skip)
    values = {name: _channel_values(CHANNELS[name], df[name], src, off, col, skip) for name, col in columns.items()}
    if skip is not None and skip.mask.any():
        ids, ts, units, *kept = skip.apply(ids, ts, units, *values.values())
        values = dict(zip(values, kept))
        if len(ids) == 0:
            raise DataError(f"{src}: every one of its {len(df):,} rows is bad (see the errors report)")
    for name, v in values.items():  # a column without one value would give every record a zero (or null) channel
        require_values(v, src, columns[name], CHANNELS[name])
    pid, uniques = pd.factorize(ids, sort=True)  # sorted ids -> records ordered by product
    per = ts.dt.to_period(PERIOD_CODES[freq]).array.asi8
    grid = _Grid(np.asarray(uniques, dtype=object), int(per.min()), PERIOD_CODES[freq])
    units_pt, dropped = grid.unit_matrix(pid, per - grid.p0, units, ts.max())  # (P, T)
    T = units_pt.shape[1]
    _check_finite_sums(units_pt, grid, src, units_col)
    # (P,) first period with a sale; a log inside one partial period has no complete period (T = 0) at all
    first = np.where(units_pt.any(axis=1), (units_pt > 0).argmax(axis=1), T) if T else np.zeros(len(units_pt), int)
    matrices = {"sales": units_pt}
    for ch in context_channels():
        if ch.build == "total":
            matrices[ch.name] = matrices[ch.of].sum(axis=0, keepdims=True)  # (1, T) the whole shop
        elif ch.name in values:
            matrices[ch.name] = _channel_matrix(ch.build, pid, per - grid.p0, units, values[ch.name],
                                                units_pt.shape)
            _check_finite_channel(matrices[ch.name], ch, grid, src, columns.get(ch.name), units_col)
    return _Log(grid, units_pt, first, dropped, src, {k: v for k, v in matrices.items() if k != "sales"})


def _as_of_period(log: _Log, as_of: Any) -> int:
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


def _partial_note(log: _Log) -> str:
    return f" (the last, partial period ending {log.dropped} is left out)" if log.dropped else ""


def _active(log: _Log, cut: np.ndarray, history: int, min_history_units: float) -> tuple[np.ndarray, np.ndarray]:
    """(cutoff position, product) pairs that get a record, cutoff-major (sorted by cutoff, then product)."""
    csum = np.concatenate([np.zeros((len(log.units), 1)), log.units.cumsum(axis=1)], axis=1)  # (P, T + 1)
    totals = csum[:, cut + 1] - csum[:, np.maximum(cut + 1 - history, 0)]  # (P, C) units in each history window
    # a product exists at a cutoff only once it has sold: choosing products by later sales would leak
    keep = (log.first[:, None] <= cut[None, :]) & (totals >= min_history_units - 1e-9)
    ci, p = np.nonzero(keep.T)
    return ci, p


def _build_records(log: _Log, p: np.ndarray, c: np.ndarray, *, history: int, horizon: int, series_start: str,
                   rule: LabelRule, texts, reviews, product_col, time_col, title_col, description_col, review_col,
                   max_reviews: int, freq: str, bar, report: ErrorReport, on_error: str) -> list[dict]:
    """The record of each (product p[i], cutoff period c[i]): training and as-of records both come from here.

    Only periods <= c enter `sales`, text and reviews. With horizon > 0 the next `horizon` periods become
    `future_sales` and the label; horizon 0 (as-of) leaves both keys out.
    """
    units = log.units
    # histories that would start before the log (possible for an as-of cutoff) are cut at its first period
    length = np.minimum(history, c + 1) if series_start == "data" else np.minimum(history, c - log.first[p] + 1)
    hist = units[p[:, None], np.maximum(c[:, None] - history + 1 + np.arange(history), 0)]  # (N, history)
    fut = units[p[:, None], c[:, None] + 1 + np.arange(horizon)]  # (N, horizon)
    labels = _labels(hist, length, fut, rule) if horizon else [None] * len(p)

    bar.set_description("text as of each cutoff")
    title, desc = texts_as_of(texts, log.grid, p, c, product_col, time_col, title_col, description_col, report,
                               on_error)
    revs = reviews_as_of(reviews, log.grid, p, c, product_col, time_col, review_col, max_reviews, report, on_error)

    bar.set_description("building records")
    bar.reset(total=len(p))
    records = []
    uc, inv = np.unique(c, return_inverse=True)
    cuts = np.asarray(log.grid.end_dates(uc), dtype=object)[inv].tolist()
    pids, starts = log.grid.products[p].tolist(), (history - length).tolist()
    rows = zip(pids, title, desc, revs, hist.tolist(), starts, cuts, labels, fut.tolist())
    for i, (pid_i, t, d, rv, h, s0, cu, lab, fu) in enumerate(rows):
        rec = {"product_id": pid_i, "title": t, "description": d, "reviews": rv, "sales": h[s0:], "cutoff": cu,
               "freq": freq, "category": None}  # an order log has no product groups
        if horizon:
            rec.update(label=lab, future_sales=fu)
        records.append(rec)
        if i % 20000 == 0:
            bar.update(min(20000, len(p) - i))
    add_context_fields(records, log.grid, log.channels, p, c, log.first, history - length, rule)
    return records


def _channel_values(ch, s: pd.Series, src: str, off: int, col: str, skip) -> np.ndarray:
    """A channel's log column, checked: numbers for a sum or a mean, ids (None where missing: not counted) otherwise."""
    if ch.build == "sum":  # an empty cell adds nothing
        return parse_units(s, src, off, col, what=ch.name, skip=skip, missing_ok=True)
    if ch.build == "mean":  # the price rule: 0 and an empty cell both mean "no price known" (docs/data.md)
        x = parse_units(s, src, off, col, what=ch.name, skip=skip, missing_ok=ch.nullable)
        return np.where(x > 0, x, np.nan) if ch.nullable else x
    ids = s.astype("string").str.strip().to_numpy(dtype=object, na_value=None)
    ids[ids == ""] = None
    return ids


def _check_finite_channel(matrix: np.ndarray, ch, grid: "_Grid", src: str, col: str | None, units_col: str) -> None:
    """A sum or a units-weighted mean that overflowed (= inf) is one error naming the column and period."""
    if ch.build in ("sum", "mean") and np.isinf(matrix).any():
        p, t = np.argwhere(np.isinf(matrix))[0]
        raise DataError(f"{src}: column {col!r}: {'the sum of' if ch.build == 'sum' else 'units x'} {ch.name} of "
                        f"product {grid.products[p]!r} in the period "
                        f"ending {grid.end_dates(np.array([t]))[0]} is infinite (float overflow); check the "
                        f"{col!r} and {units_col!r} columns for absurdly large values")


def _channel_matrix(build: str, pid, per, units, values, shape) -> np.ndarray:
    """(P, T) of one channel per (product, period), the dropped partial period left out.

    sum: `values` summed (0 where none); mean: units-weighted mean of `values`, NaN where nothing sold;
    distinct: distinct non-null values; count: rows with a non-null value.
    """
    ok = per < shape[1]
    key = pid[ok] * shape[1] + per[ok]
    size = shape[0] * shape[1]
    if build == "sum":  # an empty cell (NaN) adds 0; an overflow to inf: _check_finite_channel
        return np.bincount(key, weights=np.nan_to_num(values[ok], nan=0.0), minlength=size).reshape(shape)
    if build == "mean":  # over the lines with a value: a line without one still counts in sales, not here
        has = ~np.isnan(values[ok])
        flat_u = np.bincount(key[has], weights=units[ok][has], minlength=size)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # an overflow: _check_finite_channel
            flat_r = np.bincount(key[has], weights=units[ok][has] * values[ok][has], minlength=size)
            return np.where(flat_u > 0, flat_r / flat_u, np.nan).reshape(shape)
    v = values[ok]
    has = pd.notna(v)
    if build == "count":
        return np.bincount(key[has], minlength=size).astype(np.float64).reshape(shape)
    code, uniq = pd.factorize(v[has])
    pairs = np.unique(key[has].astype(np.int64) * max(len(uniq), 1) + code)  # distinct (cell, value)
    return np.bincount(pairs // max(len(uniq), 1), minlength=size).astype(np.float64).reshape(shape)


def add_context_fields(records: list[dict], grid: "_Grid", channels: dict[str, np.ndarray], p: np.ndarray,
                       c: np.ndarray, first: np.ndarray, starts: np.ndarray, rule: LabelRule) -> None:
    """Add the §1 context fields to records built at (product p, cutoff period c), in place.

    Every context channel covers exactly the periods of `sales` (so nothing after the cutoff; None when its
    log column was not given), `first_sale` is the end date of the product's first period with a sale (at or
    before the cutoff, since a product enters only once it has sold), and `change` is the label rule's log
    ratio (from `future_sales`; never an input).

    Args:
        records: the records, in the order of p and c.
        grid: the product/period grid; channels: channel name -> (P, T) or (1, T) matrix (see `_Log`).
        p, c: (N,) product and cutoff-period index of each record; first (P,) first-sale period per product.
        starts: (N,) offset of each record's `sales` inside its `history`-long window.
        rule: the label rule (K, F, alpha) for `change`.
    """
    if not records:
        return
    history = len(records[0]["sales"]) + int(starts[0])
    # (N, history) period indices, all <= cutoff; those before the log (as-of histories) fall in the cut-off
    # `starts` part and are clipped only to stay valid indices
    window = np.maximum(c[:, None] - history + 1 + np.arange(history), 0)
    first_dates = np.asarray(grid.end_dates(first[p]), dtype=object)
    for ch in context_channels():
        m = channels.get(ch.name)
        if m is None:
            for r in records:
                r[ch.name] = None
            continue
        rows = np.zeros_like(p) if len(m) == 1 else p  # a shop total is one row for every product
        values = m[rows[:, None], window].tolist()
        for r, v, s0 in zip(records, values, starts.tolist()):
            v = v[s0:]
            if ch.nullable or ch.digits is not None:
                v = [None if x != x else (x if ch.digits is None else round(x, ch.digits)) for x in v]
            r[ch.name] = v
    for i, r in enumerate(records):
        r["first_sale"] = first_dates[i]
        if "future_sales" in r:  # as-of records have no future, hence no change
            r["change"] = rule.change(r["sales"], r["future_sales"]) if r["future_sales"] else None


@dataclass
class _Grid:
    """The (product, period) grid every table is looked up in: sorted product ids, periods counted from p0."""

    products: np.ndarray  # (P,) sorted product ids
    p0: int  # ordinal of the first sales period
    code: str  # pandas period code

    def unit_matrix(self, pid, per, units, last_ts) -> tuple[np.ndarray, str | None]:
        """Units summed per (product, period), missing periods 0, without an incomplete last period."""
        T = int(per.max()) + 1
        last_end = pd.Period(ordinal=self.p0 + T - 1, freq=self.code).end_time.normalize()
        dropped = None
        if last_ts.normalize() < last_end:  # the log stops before the last period's end date
            dropped, T = last_end.date().isoformat(), T - 1
        ok = per < T
        flat = np.bincount(pid[ok] * T + per[ok], weights=units[ok], minlength=len(self.products) * T)
        return flat.reshape(len(self.products), T), dropped

    def end_dates(self, per: np.ndarray) -> list[str]:
        return [d.date().isoformat() for d in pd.PeriodIndex.from_ordinals(self.p0 + per, freq=self.code).end_time]

    def period(self, ts: pd.Series) -> np.ndarray:
        return ts.dt.to_period(self.code).array.asi8 - self.p0

    def product(self, ids: np.ndarray) -> np.ndarray:
        return pd.Index(self.products).get_indexer(ids)  # -1: a product that never appears in the sales


def _check_finite_sums(units_pt: np.ndarray, grid: "_Grid", src: str, col: str) -> None:
    """Units per period, and their running totals over a window, must stay finite: a sum that overflows to inf
    would write records that the records reader itself rejects."""
    with np.errstate(over="ignore"):
        csum = units_pt.cumsum(axis=1)
        market = units_pt.sum(axis=0)  # (T,) the shop's units per period: the market_sales channel
    bad = ~np.isfinite(csum)
    if bad.any():
        p, t = np.argwhere(bad)[0]
        raise DataError(f"{src}: column {col!r}: the units of product {grid.products[p]!r} up to the period ending "
                        f"{grid.end_dates(np.array([t]))[0]} sum to infinity (float overflow); check that column for "
                        "absurdly large values")
    if not np.isfinite(market).all():
        t = int(np.argmin(np.isfinite(market)))
        raise DataError(f"{src}: column {col!r}: the units of all products in the period ending "
                        f"{grid.end_dates(np.array([t]))[0]} sum to infinity (float overflow); check that column for "
                        "absurdly large values")


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


def _labels(hist: np.ndarray, length: np.ndarray, fut: np.ndarray, rule: LabelRule) -> list[str]:
    # the same means `LabelRule.label` takes on the stored record: last min(K, len) sales, first min(F, horizon)
    k = np.minimum(rule.K, length)
    recent = np.cumsum(hist[:, ::-1], axis=1)[np.arange(len(hist)), k - 1] / k if len(hist) else np.zeros(0)
    future = fut[:, : rule.F].mean(axis=1)
    return rule.labels_vectorized(recent, future).tolist()
