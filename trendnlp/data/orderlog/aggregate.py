"""The order log of `prepare` aggregated to (product, period), in bounded memory: what every window reads.

    log (file or DataFrame) --batches of rows, each checked (tables.py)--> Arrow batches (product, period, ...)
        --DuckDB: GROUP BY product, period, spilling to disk past MEMORY_LIMIT--> one row per (product, period)
        --> OrderLog: (P, T) matrices of units and of each context channel, sorted products, the period grid
Only one batch of log rows is in Python's memory at a time; the aggregate holds one row per product and period
with a sale. Each channel is built as the registry (data.channels) declares it: `sum` a real sum of its column,
`mean` the units-weighted mean over the lines with a value, `distinct` distinct non-null values, `count` rows
with a value, `total` another channel summed over every product of the log.

With a `Shard`, only the products whose stable hash (blake2b of the id, the same on every machine and run)
falls in the shard are aggregated; the period grid and the shop totals still come from every row, so N shards
together give exactly the one-process records.
"""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from trendnlp.data.record_files.channels import CHANNELS, context_channels
from trendnlp.data.record_files.io import ErrorReport, RecordError
from trendnlp.data.record_files.schema import PERIOD_CODES
from trendnlp.data.orderlog.tables import SkippedRows, iter_table, parse_times, parse_units, product_ids, require_values
from trendnlp.errors import DataError

ROWS_PER_BATCH = 500_000  # log rows checked at a time (a few hundred MB of pandas objects at most)
MEMORY_LIMIT = "1GB"  # DuckDB's own budget for the aggregation; past it, it spills to a temporary folder


@dataclass(frozen=True)
class Shard:
    """Part `index` of `count`: the products whose stable hash modulo `count` is `index`.

    >>> Shard(0, 2).keep(np.array(["a", "b", "c", "a"], dtype=object)).tolist()
    [True, True, False, True]
    """

    index: int
    count: int

    def __post_init__(self):
        if not (isinstance(self.count, int) and self.count >= 1 and isinstance(self.index, int)
                and 0 <= self.index < self.count):
            raise ValueError(f"--shard-index must be in [0, --num-shards - 1] and --num-shards >= 1, found shard "
                             f"{self.index!r} of {self.count!r}")

    def keep(self, ids: np.ndarray) -> np.ndarray:
        """(n,) bool: the ids (strings) in this shard; each distinct id is hashed once."""
        codes, uniques = pd.factorize(ids)
        return (shard_of(uniques, self.count) == self.index)[codes]


def shard_of(ids, count: int) -> np.ndarray:
    """The shard of each product id: blake2b (8 bytes) of its UTF-8 text, modulo `count` (stable, unsalted).

    >>> shard_of(["85123A", "22423"], 4).tolist()
    [0, 3]
    """
    return np.fromiter((int.from_bytes(hashlib.blake2b(str(i).encode("utf-8"), digest_size=8).digest(), "little")
                        % count for i in ids), dtype=np.int64, count=len(ids))


@dataclass
class Grid:
    """The (product, period) grid every table is looked up in: sorted product ids, periods counted from p0."""

    products: np.ndarray  # (P,) sorted product ids
    p0: int  # ordinal of the first sales period
    code: str  # pandas period code

    def end_dates(self, per: np.ndarray) -> list[str]:
        return [d.date().isoformat() for d in pd.PeriodIndex.from_ordinals(self.p0 + per, freq=self.code).end_time]

    def period(self, ts: pd.Series) -> np.ndarray:
        return ts.dt.to_period(self.code).array.asi8 - self.p0

    def product(self, ids: np.ndarray) -> np.ndarray:
        return pd.Index(self.products).get_indexer(ids)  # -1: a product that never appears in the sales


@dataclass
class OrderLog:
    """An order log as units per (product, complete period), with what every window lookup needs."""

    grid: Grid
    units: np.ndarray  # (P, T) units per product and period, 0 where nothing sold
    first: np.ndarray  # (P,) first period with a sale (T: never)
    dropped: str | None  # end date of the incomplete last period that was left out
    source: str
    # context channel -> (P, T) per product, or (1, T) for a shop total; absent: its column was not given
    channels: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _Scan:
    """What one pass over the log's rows learns besides the aggregate: counts, the date range, shop totals."""

    rows: int = 0
    kept: int = 0  # rows left after skipping bad ones (all shards)
    values: dict[str, int] = field(default_factory=dict)  # channel -> kept rows with a value
    period_min: int | None = None
    period_max: int | None = None
    ts_max: pd.Timestamp | None = None
    market: dict[int, float] = field(default_factory=dict)  # period ordinal -> units of every product
    error: BaseException | None = None  # raised inside the batches DuckDB pulled


def read_log(sales: Any, product_col: str, time_col: str, units_col: str, columns: dict[str, str], freq: str,
             report: ErrorReport, on_error: str, shard: Shard | None = None, bar=None) -> OrderLog:
    """Check the log's rows a batch at a time and aggregate them to (product, period) matrices.

    Args:
        sales: DataFrame or .csv / .parquet / .jsonl path.
        product_col, time_col, units_col: its columns; columns: channel name -> its log column.
        freq: "W", "D" or "M"; report, on_error: as for `prepare`.
        shard: aggregate only this shard's products (None: all).
        bar: a tqdm bar counting the rows read.
    Returns:
        the OrderLog (products sorted; only the shard's with `shard`).
    """
    import duckdb

    src, off, batches = iter_table(sales, "sales", {"product": [product_col], "time": [time_col],
                                                    "units": [units_col], **{n: [c] for n, c in columns.items()}},
                                   rows=ROWS_PER_BATCH)
    scan = _Scan(values=dict.fromkeys(columns, 0))
    names = list(columns)
    schema = pa.schema([("product", pa.string()), ("period", pa.int64()), ("units", pa.float64())]
                       + [(n, pa.float64() if CHANNELS[n].build in ("mean", "sum") else pa.string()) for n in names])
    checked = _checked_batches(batches, src, off, (product_col, time_col, units_col), columns, freq, report,
                               on_error, shard, scan, schema, bar)
    with tempfile.TemporaryDirectory(prefix="trendnlp-aggregate-") as spill:
        con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "temp_directory": spill,
                                     "preserve_insertion_order": False, "threads": 1})
        con.register("log_rows", pa.RecordBatchReader.from_batches(schema, checked))  # pulled a batch at a time
        terms = _aggregates(names)
        try:
            con.execute(f"CREATE TEMP TABLE agg AS SELECT product, period, sum(units) AS units"
                        f"{''.join(', ' + t for t in terms)} FROM log_rows GROUP BY product, period")
        except duckdb.Error:
            if scan.error is not None:  # a bad row: the one-line error of the check, not DuckDB's wrapper
                raise scan.error from None
            raise
        products = np.array(sorted(r[0] for r in con.execute("SELECT DISTINCT product FROM agg").fetchall()),
                            dtype=object)
        con.register("products", pa.table({"product": pa.array(products.tolist(), pa.string()),
                                           "pid": pa.array(np.arange(len(products)), pa.int64())}))
        wanted = ", ".join(["products.pid", "agg.period", "agg.units"] + [f"agg.{t.rsplit(' AS ', 1)[1]}"
                                                                          for t in terms])
        agg = con.execute(f"SELECT {wanted} FROM agg JOIN products ON agg.product = products.product").fetchnumpy()
        con.close()
    if scan.rows == 0:
        raise RecordError(src, None, units_col, "the sales table has no rows")
    if scan.kept == 0:
        raise DataError(f"{src}: every one of its {scan.rows:,} rows is bad (see the errors report)")
    for name, col in columns.items():  # a column without one value would give every record a zero (or null) channel
        require_values(scan.kept, scan.values[name], src, col, CHANNELS[name])
    return _matrices(scan, agg, products, freq, src, columns, units_col)


def _aggregates(names: list[str]) -> list[str]:
    """The SELECT terms (`... AS name`) of each channel's aggregate, by its registry `build`."""
    terms = []
    for n in names:
        build, c = CHANNELS[n].build, f'"{n}"'
        if build == "mean":  # units-weighted, over the lines with a value (units x value summed per line)
            terms += [f'coalesce(sum(units * {c}) FILTER (WHERE {c} IS NOT NULL), 0) AS "{n}__num"',
                      f'coalesce(sum(units) FILTER (WHERE {c} IS NOT NULL), 0) AS "{n}__den"']
        elif build == "sum":
            terms.append(f"coalesce(sum({c}), 0) AS {c}")
        elif build == "distinct":
            terms.append(f"count(DISTINCT {c}) AS {c}")
        elif build == "count":
            terms.append(f"count({c}) AS {c}")
        else:
            raise ValueError(f"channel {n!r}: build {build!r} does not read a log column")
    return terms


def _checked_batches(batches, src, off, cols, columns, freq, report, on_error, shard, scan: _Scan, schema, bar):
    """Each batch of log rows checked (tables.py: product ids, timestamps, units, channel columns; bad rows
    raise or, under on_error="skip", are reported and left out), reduced to Arrow columns for the aggregation."""
    product_col, time_col, units_col = cols
    try:
        for df in batches:
            scan.rows += len(df)
            skip = SkippedRows(len(df), report) if on_error == "skip" else None
            ids = product_ids(df, src, off, product_col, skip)
            ts = parse_times(df["time"], src, off, time_col, skip)
            units = parse_units(df["units"], src, off, units_col, skip=skip)
            values = {n: channel_values(CHANNELS[n], df[n], src, off, c, skip) for n, c in columns.items()}
            if skip is not None and skip.mask.any():
                ids, ts, units, *kept = skip.apply(ids, ts, units, *values.values())
                values = dict(zip(values, kept))
            if bar is not None:
                bar.update(len(df))
            if len(ids) == 0:
                continue
            scan.kept += len(ids)
            for n, v in values.items():
                scan.values[n] += int(pd.notna(v).sum())
            per = ts.dt.to_period(PERIOD_CODES[freq]).array.asi8
            lo, hi, last = int(per.min()), int(per.max()), ts.max()
            scan.period_min = lo if scan.period_min is None else min(scan.period_min, lo)
            scan.period_max = hi if scan.period_max is None else max(scan.period_max, hi)
            scan.ts_max = last if scan.ts_max is None else max(scan.ts_max, last)
            with np.errstate(over="ignore"):  # an overflow is reported by _check_finite_sums, naming the period
                totals = np.bincount(per - lo, weights=units)
            for k in np.flatnonzero(np.bincount(per - lo)).tolist():  # the shop's units: every product, all shards
                scan.market[lo + k] = scan.market.get(lo + k, 0.0) + totals[k]
            if shard is not None:
                keep = shard.keep(ids)
                ids, per, units = ids[keep], per[keep], units[keep]
                values = {n: v[keep] for n, v in values.items()}
            arrays = [pa.array(ids, pa.string()), pa.array(per, pa.int64()), pa.array(units, pa.float64())]
            arrays += [pa.array(v, schema.field(n).type, from_pandas=True) for n, v in values.items()]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)
    except BaseException as e:  # DuckDB wraps what its scan raises; read_log re-raises the original
        scan.error = e
        raise


def channel_values(ch, s: pd.Series, src: str, off: int, col: str, skip) -> np.ndarray:
    """A channel's log column, checked: numbers for a mean or sum, ids (None where missing: not counted) else."""
    if ch.build == "sum":  # an empty cell adds nothing
        x = parse_units(s, src, off, col, what=ch.name, skip=skip, missing_ok=True)
        return np.where(np.isnan(x), 0.0, x)
    if ch.build == "mean":  # the price rule: 0 and an empty cell both mean "no price known" (docs/data.md)
        x = parse_units(s, src, off, col, what=ch.name, skip=skip, missing_ok=ch.nullable)
        return np.where(x > 0, x, np.nan) if ch.nullable else x
    ids = s.astype("string").str.strip().to_numpy(dtype=object, na_value=None)
    ids[ids == ""] = None
    return ids


def _matrices(scan: _Scan, agg: dict, products: np.ndarray, freq: str, src: str, columns: dict[str, str],
              units_col: str) -> OrderLog:
    """The aggregate rows as dense (P, T) matrices on the period grid, the incomplete last period left out."""
    code = PERIOD_CODES[freq]
    grid = Grid(products, scan.period_min, code)
    T = scan.period_max - grid.p0 + 1
    last_end = pd.Period(ordinal=grid.p0 + T - 1, freq=code).end_time.normalize()
    dropped = None
    if scan.ts_max.normalize() < last_end:  # the log stops before the last period's end date
        dropped, T = last_end.date().isoformat(), T - 1
    pid, per = np.asarray(agg["pid"], np.int64), np.asarray(agg["period"], np.int64) - grid.p0
    ok = per < T
    pid, per = pid[ok], per[ok]

    def matrix(values) -> np.ndarray:
        m = np.zeros((len(products), T))
        m[pid, per] = np.asarray(values, np.float64)[ok]
        return m

    units = matrix(agg["units"])
    market = np.array([scan.market.get(grid.p0 + t, 0.0) for t in range(T)], dtype=np.float64)[None, :]  # (1, T)
    check_finite_sums(units, market, grid, src, units_col)
    # (P,) first period with a sale; a log inside one partial period has no complete period (T = 0) at all
    first = np.where(units.any(axis=1), (units > 0).argmax(axis=1), T) if T else np.zeros(len(units), int)
    channels = {}
    for ch in context_channels():
        if ch.build == "total":
            channels[ch.name] = market  # the only shop total: the units of every product (ch.of == "sales")
        elif ch.name in columns and ch.build == "mean":
            num, den = matrix(agg[f"{ch.name}__num"]), matrix(agg[f"{ch.name}__den"])
            with np.errstate(invalid="ignore", divide="ignore"):
                channels[ch.name] = np.where(den > 0, num / den, np.nan)
            _check_finite_channel(channels[ch.name], ch, grid, src, columns[ch.name], units_col)
        elif ch.name in columns:
            channels[ch.name] = matrix(agg[ch.name])
        if ch.name in channels and ch.digits is not None:
            channels[ch.name] = _rounded(channels[ch.name], ch.digits)
    return OrderLog(grid, units, first, dropped, src, channels)


def _rounded(m: np.ndarray, digits: int) -> np.ndarray:
    """Python's round() of every finite cell (correctly rounded, unlike numpy's), once per matrix."""
    out = m.copy()
    ok = np.isfinite(m)
    out[ok] = np.fromiter((round(x, digits) for x in m[ok].tolist()), dtype=np.float64, count=int(ok.sum()))
    return out


def _check_finite_channel(matrix: np.ndarray, ch, grid: Grid, src: str, col: str | None, units_col: str) -> None:
    """A units-weighted mean that overflowed (units x value = inf) is one error naming the column and period."""
    if np.isinf(matrix).any():
        p, t = np.argwhere(np.isinf(matrix))[0]
        raise DataError(f"{src}: column {col!r}: units x {ch.name} of product {grid.products[p]!r} in the period "
                        f"ending {grid.end_dates(np.array([t]))[0]} is infinite (float overflow); check the "
                        f"{col!r} and {units_col!r} columns for absurdly large values")


def check_finite_sums(units_pt: np.ndarray, market: np.ndarray, grid: Grid, src: str, col: str) -> None:
    """Units per period, and their running totals over a window, must stay finite: a sum that overflows to inf
    would write records that the records reader itself rejects."""
    with np.errstate(over="ignore"):
        csum = units_pt.cumsum(axis=1)
    bad = ~np.isfinite(csum)
    if bad.any():
        p, t = np.argwhere(bad)[0]
        raise DataError(f"{src}: column {col!r}: the units of product {grid.products[p]!r} up to the period ending "
                        f"{grid.end_dates(np.array([t]))[0]} sum to infinity (float overflow); check that column for "
                        "absurdly large values")
    if not np.isfinite(market).all():
        t = int(np.argmin(np.isfinite(market[0])))
        raise DataError(f"{src}: column {col!r}: the units of all products in the period ending "
                        f"{grid.end_dates(np.array([t]))[0]} sum to infinity (float overflow); check that column for "
                        "absurdly large values")
