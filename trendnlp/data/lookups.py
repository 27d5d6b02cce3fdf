"""As-of lookups of `prepare`: each record's title, description and reviews as known at its cutoff.

    text rows    --cumulative mode per product-->  title / description as of each cutoff
    review rows  --sorted per product-->  the newest `max_reviews` dated on or before each cutoff
Every lookup is bounded by the cutoff's period index, so no text or review dated after a cutoff reaches it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trendnlp.data.io import RecordError
from trendnlp.data.tables import drop_bad_rows, parse_times, product_ids, read_table, text_column


def texts_as_of(texts, grid, p, c, product_col, time_col, title_col, description_col, report=None,
                 on_error="raise"):
    n = len(p)
    if texts is None:
        return [""] * n, [""] * n
    wanted = {"product": [product_col, "product_id"], "time": [time_col, "timestamp"],
              "title": [title_col] if title_col else [], "description": [description_col] if description_col else []}
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
    best = mode_as_of(pid[has], per[has], val, order_key[has], p, c)
    titles = np.append(np.asarray(t_uniq, dtype=object)[pairs // max(len(d_uniq), 1)], "")  # index -1 -> ""
    descs = np.append(np.asarray(d_uniq, dtype=object)[pairs % max(len(d_uniq), 1)], "")
    return titles[best].tolist(), descs[best].tolist()


def mode_as_of(pid, per, val, when, q_pid, q_per) -> np.ndarray:
    """Per query (product, period): the value seen most often at or before that period; ties -> most recent.

    Runs in O(n log n): count each (product, value, period), accumulate counts per (product, value) over
    periods, score each state as (count, recency) packed in one int64, and take the running max per product.
    The running max is the mode because a value's score only grows and other values' scores stand still.
    """
    if len(pid) == 0:
        return np.full(len(q_pid), -1)
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
    idx = last_at_or_before(spid, sper, q_pid, q_per)
    return np.where(idx >= 0, best_val[idx], -1)


def reviews_as_of(reviews, grid, p, c, product_col, time_col, review_col, max_reviews, report=None,
                   on_error="raise"):
    n = len(p)
    if reviews is None or max_reviews == 0:
        return [[] for _ in range(n)]
    wanted = {"product": [product_col, "product_id"], "time": [time_col, "timestamp"], "text": [review_col, "review"]}
    df, src, off = read_table(reviews, "reviews", wanted)
    df = drop_bad_rows(df, src, off, wanted["product"][0], time_col, report, on_error)
    pid = grid.product(product_ids(df, src, off, wanted["product"][0]))
    when = parse_times(df["time"], src, off, time_col)
    text = text_column(df, "text")
    has = (pid >= 0) & (text != "")
    per = grid.period(when)[has]
    stamp = when.to_numpy().astype("datetime64[ns]").astype(np.int64)[has]
    order = np.lexsort((stamp, pid[has]))  # by product, then time; equal times keep file order
    spid, sper, stext = pid[has][order], per[order], text[has][order].tolist()
    end = last_at_or_before(spid, sper, p, c) + 1  # one past the newest review at or before the cutoff
    start = np.maximum(np.searchsorted(spid, p, side="left"), end - max_reviews)
    return [stext[s:e][::-1] if e > 0 else [] for s, e in zip(start.tolist(), end.tolist())]


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
