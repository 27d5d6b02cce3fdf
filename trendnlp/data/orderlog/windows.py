"""The records of `prepare`, windowed from an aggregated order log a chunk of products at a time.

    OrderLog (P, T) --products [a, b)--> (product, cutoff) pairs that pass the filter
        --> one Arrow table of records per chunk (the declared record columns, data.schema)
Only one chunk's records exist at a time, so memory grows with the chunk, not with the number of records.
Only periods <= a record's cutoff enter its `sales`, channels, text and reviews; with a horizon the next
periods become `future_sales`, the label and `change`; as-of records (horizon 0) carry neither.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from trendnlp.data.orderlog.aggregate import OrderLog
from trendnlp.data.record_files.channels import context_channels
from trendnlp.labels import LabelRule

RECORDS_PER_CHUNK = 100_000  # about 100 MB of windows in flight with every channel
AS_OF_DROPPED = ("label", "future_sales", "change")  # fields an as-of record leaves out


def active(units: np.ndarray, first: np.ndarray, cut: np.ndarray, history: int,
           min_history_units: float) -> tuple[np.ndarray, np.ndarray]:
    """(product, cutoff position) pairs that get a record, product-major (by product, then cutoff)."""
    csum = np.concatenate([np.zeros((len(units), 1)), units.cumsum(axis=1)], axis=1)  # (P, T + 1)
    totals = csum[:, cut + 1] - csum[:, np.maximum(cut + 1 - history, 0)]  # (P, C) units in each history window
    # a product exists at a cutoff only once it has sold: choosing products by later sales would leak
    keep = (first[:, None] <= cut[None, :]) & (totals >= min_history_units - 1e-9)
    return np.nonzero(keep)


def record_tables(log: OrderLog, cut: np.ndarray, *, history: int, horizon: int, series_start: str,
                  min_history_units: float, rule: LabelRule, texts, reviews, freq: str, schema: pa.Schema,
                  bar=None) -> Iterator[pa.Table]:
    """The records of every (product, cutoff period in `cut`) that passes the filter, one table per chunk of
    products; rows by product, then cutoff.

    Args:
        log: the aggregated order log; cut: (C,) candidate cutoff periods.
        history, horizon, series_start, min_history_units, rule, freq: as for `prepare` (horizon 0: as-of).
        texts, reviews: lookups called with (p, c) (data.orderlog.lookups.TextsAsOf, ReviewsAsOf).
        schema: the record columns (data.record_files.schema.arrow_features().arrow_schema), all written, in order.
        bar: a tqdm bar counting products.
    """
    P = len(log.units)
    step = max(1, RECORDS_PER_CHUNK // max(len(cut), 1))
    for a in range(0, P, step):
        b = min(P, a + step)
        pl, ci = active(log.units[a:b], log.first[a:b], cut, history, min_history_units)
        if len(pl):
            yield _table(log, a + pl, cut[ci], history, horizon, series_start, rule, texts, reviews, freq, schema)
        if bar is not None:
            bar.update(b - a)


def _table(log: OrderLog, p: np.ndarray, c: np.ndarray, history: int, horizon: int, series_start: str,
           rule: LabelRule, texts, reviews, freq: str, schema: pa.Schema) -> pa.Table:
    n, grid = len(p), log.grid
    # histories that would start before the log (possible for an as-of cutoff) are cut at its first period
    length = np.minimum(history, c + 1) if series_start == "data" else np.minimum(history, c - log.first[p] + 1)
    window = np.maximum(c[:, None] - history + 1 + np.arange(history), 0)  # (N, history), all <= cutoff
    inside = np.arange(history)[None, :] >= (history - length)[:, None]  # the periods of each record's `sales`
    offsets = pa.array(np.concatenate([[0], np.cumsum(length)]), pa.int32())

    def seq(values: np.ndarray, nullable: bool = False) -> pa.Array:  # (N, history) -> each record's periods
        flat = values[inside]
        return pa.ListArray.from_arrays(offsets, pa.array(flat, pa.float64(), mask=np.isnan(flat) if nullable
                                                          else None))

    hist = log.units[p[:, None], window]
    title, desc = texts(p, c)
    cols = {"product_id": pa.array(grid.products[p], pa.string()), "title": pa.array(title, pa.string()),
            "description": pa.array(desc, pa.string()), "reviews": pa.array(reviews(p, c), pa.list_(pa.string())),
            "sales": seq(hist), "cutoff": pa.array(_dates(grid, c), pa.string()),
            "freq": pa.array([freq] * n, pa.string()), "first_sale": pa.array(_dates(grid, log.first[p]), pa.string())}
    for ch in context_channels():
        m = log.channels.get(ch.name)
        rows = p if m is None or len(m) > 1 else np.zeros_like(p)  # a shop total is one row for every product
        cols[ch.name] = pa.nulls(n, pa.list_(pa.float64())) if m is None else seq(m[rows[:, None], window],
                                                                                 ch.nullable)
    if horizon:
        fut = log.units[p[:, None], c[:, None] + 1 + np.arange(horizon)]  # (N, horizon)
        recent, future = _means(hist, length, fut, rule)
        cols["label"] = pa.array(_labels(hist, length, fut, rule), pa.string())
        cols["future_sales"] = pa.ListArray.from_arrays(pa.array(np.arange(n + 1) * horizon, pa.int32()),
                                                        pa.array(fut.ravel(), pa.float64()))
        a = rule.alpha  # the rule's log ratio, as LabelRule.change computes it on the stored record
        cols["change"] = pa.array([math.log((f + a) / (r + a)) for r, f in zip(recent.tolist(), future.tolist())],
                                  pa.float64())
    return pa.Table.from_arrays([cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in schema],
                                schema=schema)


def _dates(grid, per: np.ndarray) -> list[str]:
    uniq, inv = np.unique(per, return_inverse=True)  # a few distinct periods among many records
    return np.asarray(grid.end_dates(uniq), dtype=object)[inv.ravel()].tolist()


def _means(hist: np.ndarray, length: np.ndarray, fut: np.ndarray, rule: LabelRule) -> tuple[np.ndarray, np.ndarray]:
    """(recent, future) means of each record as `LabelRule.change` takes them on the stored record: the last
    min(K, len(sales)) sales and the first min(F, horizon) future periods, summed oldest first."""
    k = np.minimum(rule.K, length)
    recent = np.zeros(len(hist))
    for j in range(max(hist.shape[1] - rule.K, 0), hist.shape[1]):  # left to right, as np.mean adds them
        recent = recent + np.where(j >= hist.shape[1] - k, hist[:, j], 0.0)
    return recent / k, fut[:, : rule.F].mean(axis=1)


def _labels(hist: np.ndarray, length: np.ndarray, fut: np.ndarray, rule: LabelRule) -> list[str]:
    # the same means `LabelRule.label` takes on the stored record: last min(K, len) sales, first min(F, horizon)
    k = np.minimum(rule.K, length)
    recent = np.cumsum(hist[:, ::-1], axis=1)[np.arange(len(hist)), k - 1] / k if len(hist) else np.zeros(0)
    future = fut[:, : rule.F].mean(axis=1)
    return rule.labels_vectorized(recent, future).tolist()
