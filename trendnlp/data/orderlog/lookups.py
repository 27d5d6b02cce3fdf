"""As-of lookups of `prepare`: each record's title, description and reviews as known at its cutoff.

    text rows    --cumulative mode per product-->  title / description as of each cutoff
    review rows  --sorted per product-->  the newest `max_reviews` dated on or before each cutoff
Every lookup is bounded by the cutoff's period index, so no text or review dated after a cutoff reaches it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trendnlp.data.record_files.io import RecordError
from trendnlp.data.orderlog.tables import drop_bad_rows, parse_times, product_ids, read_table, text_column


class TextsAsOf:
    """The texts table read once; called with (product p, cutoff period c) arrays, it gives each pair's
    (titles, descriptions) as known at c: the most frequent (title, description) seen at or before c, ties to
    the most recent ("" where none). Records built a chunk of products at a time query it chunk by chunk."""

    def __init__(self, texts, grid, product_col, time_col, title_col, description_col, report=None,
                 on_error="raise"):
        self.table = None
        if texts is None:
            return
        wanted = {"product": [product_col, "product_id"], "time": [time_col, "timestamp"],
                  "title": [title_col] if title_col else [], "description": [description_col] if description_col
                  else []}
        df, src, off = read_table(texts, "texts", wanted, optional=("time", "title", "description"))
        if "title" not in df and "description" not in df:
            raise RecordError(src, None, f"{title_col} / {description_col}", "the texts table has neither column")
        df = drop_bad_rows(df, src, off, wanted["product"][0], time_col, report, on_error)
        pid = grid.product(product_ids(df, src, off, wanted["product"][0]))
        title = text_column(df, "title")
        desc = text_column(df, "description")
        if "time" in df:
            when = parse_times(df["time"], src, off, time_col)
            per = grid.period(when)
            order_key = when.to_numpy().astype("datetime64[ns]").astype(np.int64)
        else:  # undated text: known at every cutoff; among repeated rows the later row wins ties
            per = np.full(len(df), np.iinfo(np.int32).min)
            order_key = np.arange(len(df))
        has = (pid >= 0) & ((title != "") | (desc != ""))
        # one value per distinct (title, description) pair, so that the two always come from the same row
        t_code, t_uniq = pd.factorize(title[has])
        d_code, d_uniq = pd.factorize(desc[has])
        val, pairs = pd.factorize(t_code.astype(np.int64) * max(len(d_uniq), 1) + d_code)
        self.table = mode_table(pid[has], per[has], val, order_key[has])
        self.titles = np.append(np.asarray(t_uniq, dtype=object)[pairs // max(len(d_uniq), 1)], "")  # -1 -> ""
        self.descs = np.append(np.asarray(d_uniq, dtype=object)[pairs % max(len(d_uniq), 1)], "")

    def __call__(self, p: np.ndarray, c: np.ndarray) -> tuple[list[str], list[str]]:
        if self.table is None:
            return [""] * len(p), [""] * len(p)
        best = query_mode(self.table, p, c)
        return self.titles[best].tolist(), self.descs[best].tolist()


def mode_as_of(pid, per, val, when, q_pid, q_per) -> np.ndarray:
    """Per query (product, period): the value seen most often at or before that period; ties -> most recent
    (-1 where none). `mode_table` once, then `query_mode` per batch of queries."""
    return query_mode(mode_table(pid, per, val, when), q_pid, q_per)


def query_mode(table, q_pid, q_per) -> np.ndarray:
    spid, sper, best_val = table
    if len(spid) == 0:
        return np.full(len(q_pid), -1)
    idx = last_at_or_before(spid, sper, q_pid, q_per)
    return np.where(idx >= 0, best_val[idx], -1)


def mode_table(pid, per, val, when) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(products, periods, value): the mode of each product's values up to each period where it changes, sorted
    by (product, period), for `query_mode`.

    Runs in O(n log n): count each (product, value, period), accumulate counts per (product, value) over
    periods, score each state as (count, recency) packed in one int64, and take the running max per product.
    The running max is the mode because a value's score only grows and other values' scores stand still.
    """
    if len(pid) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    g = (pd.DataFrame({"pid": pid, "val": val, "per": per, "when": when})
         .groupby(["pid", "val", "per"], sort=True).agg(n=("when", "size"), last=("when", "max")).reset_index())
    cum = g.groupby(["pid", "val"])["n"].cumsum().to_numpy(np.int64)
    rank = np.empty(len(g), np.int64)
    rank[np.lexsort((g["val"].to_numpy(), g["last"].to_numpy()))] = np.arange(len(g))  # unique recency rank
    score = cum * len(g) + rank
    order = np.lexsort((g["per"].to_numpy(), g["pid"].to_numpy()))
    spid, sper = g["pid"].to_numpy()[order], g["per"].to_numpy()[order]
    running = pd.Series(score[order]).groupby(spid).cummax().to_numpy()
    by_score = np.argsort(score)
    best_val = g["val"].to_numpy()[by_score[np.searchsorted(score[by_score], running)]]
    return spid, sper, best_val


class ReviewsAsOf:
    """The reviews table read once; called with (p, c) arrays, it gives each pair the newest `max_reviews`
    reviews dated on or before c, newest first."""

    def __init__(self, reviews, grid, product_col, time_col, review_col, max_reviews, report=None,
                 on_error="raise"):
        self.max_reviews, self.spid = max_reviews, None
        if reviews is None or max_reviews == 0:
            return
        wanted = {"product": [product_col, "product_id"], "time": [time_col, "timestamp"],
                  "text": [review_col, "review"]}
        df, src, off = read_table(reviews, "reviews", wanted)
        df = drop_bad_rows(df, src, off, wanted["product"][0], time_col, report, on_error)
        pid = grid.product(product_ids(df, src, off, wanted["product"][0]))
        when = parse_times(df["time"], src, off, time_col)
        text = text_column(df, "text")
        has = (pid >= 0) & (text != "")
        per = grid.period(when)[has]
        stamp = when.to_numpy().astype("datetime64[ns]").astype(np.int64)[has]
        order = np.lexsort((stamp, pid[has]))  # by product, then time; equal times keep file order
        self.spid, self.sper, self.stext = pid[has][order], per[order], text[has][order].tolist()

    def __call__(self, p: np.ndarray, c: np.ndarray) -> list[list[str]]:
        if self.spid is None:
            return [[] for _ in range(len(p))]
        end = last_at_or_before(self.spid, self.sper, p, c) + 1  # one past the newest review at or before c
        start = np.maximum(np.searchsorted(self.spid, p, side="left"), end - self.max_reviews)
        return [self.stext[s:e][::-1] if e > 0 else [] for s, e in zip(start.tolist(), end.tolist())]


def last_at_or_before(obs_pid: np.ndarray, obs_per: np.ndarray, q_pid: np.ndarray, q_per: np.ndarray) -> np.ndarray:
    """Index of the last observation of product q_pid with period <= q_per, or -1 (obs sorted by product, period)."""
    if len(obs_pid) == 0:
        return np.full(len(q_pid), -1)
    lo = min(int(obs_per.min()), int(q_per.min()))
    span = max(int(obs_per.max()), int(q_per.max())) - lo + 1
    key = obs_pid.astype(np.int64) * span + (obs_per - lo)  # sorted, since obs are sorted by (product, period)
    idx = np.searchsorted(key, q_pid.astype(np.int64) * span + (q_per - lo), side="right") - 1
    found = idx >= 0
    found[found] = obs_pid[idx[found]] == q_pid[found]  # else the hit belongs to an earlier product
    return np.where(found, idx, -1)
