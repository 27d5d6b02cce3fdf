"""The boosting branch's feature matrix (`gbm_all`): what LightGBM sees of a record, read off the channel registry.

    sales_calendar_matrix   SALES_FEATURE_NAMES: the sales summary (data.inputs.sales_stats.SUMMARY_NAMES), the observed
                            periods, the newest N_LAST log1p units, a longer-range change and the cutoff's
                            calendar as sin/cos (the sales baselines of the benchmark use it alone)
    channel_matrix          the cutoff's week and month as numbers, the product's age, and every context channel
                            of the registry (trendnlp.data.record_files.channels) summarised by its kind:
                              counts (build sum / distinct / count / total): recent and whole-history log level,
                                 recent vs previous and vs whole history, the newest four log1p values
                              levels (build mean, e.g. price): last known relative to the median, recent vs previous
                            plus the ratios between the shipped count channels (units per order, ...)
A channel a record lacks is NaN (LightGBM routes missing values itself), so one model serves logs without invoice
or customer ids; a channel added to the registry gets its columns here with no other edit.

>>> names = feature_names()
>>> names[:2], "orders_log_recent" in names, "price_rel_median" in names
(('log_level_recent', 'log_level_all'), True, True)
"""
from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence

import numpy as np

from trendnlp.data.record_files.channels import Channel, context_channels
from trendnlp.data.inputs.features import N_CALENDAR, cutoff_calendar
from trendnlp.data.inputs.sales_stats import SUMMARY_NAMES, summary_stats_many
from trendnlp.labels import LabelRule

N_LAST = 8  # raw log1p units of the newest periods given to the sales models next to the summary
SALES_FEATURE_NAMES = (
    *SUMMARY_NAMES,
    "history_periods",  # observed periods (young products have fewer)
    *(f"log1p_units_t-{i}" for i in range(N_LAST - 1, -1, -1)),  # newest N_LAST periods, 0 before the history
    "change_recent_vs_8_ago",  # rule's log ratio of the newest K periods vs the K ending N_LAST periods earlier
    "sin_week", "cos_week", "sin_month", "cos_month",  # of the cutoff; always the last N_CALENDAR columns
)
CHANNEL_STATS = ("log_recent", "change_recent_vs_previous", "change_recent_vs_all")  # sales_calendar_matrix's
COUNT_STATS = ("log_recent", "log_all", "change_recent_vs_previous", "change_recent_vs_all",
               "log_t-3", "log_t-2", "log_t-1", "log_t-0")
LEVEL_STATS = ("rel_median", "change_recent_vs_previous")  # log last known / median; log recent K vs previous K
# ratios between the shipped channels: (name, numerator, denominator) of recent (or whole-history) means
RATIOS = (("units_per_order_recent", "sales", "orders"), ("units_per_order_all", "sales", "orders"),
          ("customers_per_order_recent", "customers", "orders"))


def count_channels() -> list[Channel]:
    """Context channels summarised as counts: per-product ones first, then shop-wide totals (registry order
    within each)."""
    return sorted((c for c in context_channels() if c.build != "mean"), key=lambda c: c.build == "total")


def level_channels() -> list[Channel]:
    """Context channels summarised as levels (build mean, e.g. price)."""
    return [c for c in context_channels() if c.build == "mean"]


def _names_of_registry() -> set[str]:
    return {c.name for c in context_channels()} | {"sales"}


def channel_feature_names() -> tuple[str, ...]:
    """The columns of `channel_matrix`, in order."""
    known = _names_of_registry()
    ratios = [name for name, a, b in RATIOS if {a, b} <= known]
    totals = [c.name for c in count_channels() if c.build == "total" and c.of == "sales"]
    return ("week_of_year", "month", "age_periods",  # of the cutoff; periods since the product's first sale
            *(f"{c.name}_{s}" for c in count_channels() for s in COUNT_STATS), *ratios,
            *(f"share_of_{t.removesuffix('_sales')}_recent_vs_all" for t in totals),
            *(f"{c.name}_{s}" for c in level_channels() for s in LEVEL_STATS))


def feature_names() -> tuple[str, ...]:
    """The gbm_all columns: SALES_FEATURE_NAMES then `channel_feature_names()`."""
    return (*SALES_FEATURE_NAMES, *channel_feature_names())


def sales_channel_feature_names(channels: Sequence[str]) -> list[str]:
    """Columns `sales_calendar_matrix` adds for context channels (before the calendar), e.g. orders_log_recent.

    >>> sales_channel_feature_names(["orders"])[0]
    'orders_log_recent'
    """
    return [f"{name}_{stat}" for name in channels for stat in CHANNEL_STATS]


def _channel_stats(values: Sequence[float | None] | None, K: int, alpha: float) -> list[float]:
    """CHANNEL_STATS of one channel's periods (null periods left out; all 0 without the channel)."""
    v = np.array([x for x in (values or ()) if x is not None], dtype=np.float64)
    if len(v) == 0:
        return [0.0] * len(CHANNEL_STATS)
    recent = v[-K:].mean()
    prev = v[-2 * K:-K].mean() if len(v) > K else recent
    return [np.log1p(recent), np.log((recent + alpha) / (prev + alpha)), np.log((recent + alpha) / (v.mean() + alpha))]


SUMMARY_CHUNK = 4096  # records summarised per call (a padded (chunk, history) batch)


def sales_calendar_matrix(records: Sequence[dict], rule: LabelRule, history: int = 26,
                          channels: Sequence[str] = ()) -> np.ndarray:
    """Sales summary, the newest log1p units and the cutoff's calendar: SALES_FEATURE_NAMES per record, with
    `sales_channel_feature_names(channels)` inserted before the calendar columns.

    Args:
        records: normalised records.
        rule: label rule; its K and alpha shape the summary statistics.
        history: the periods a full history holds (scales `history_fraction`).
        channels: context channels of the records (trendnlp.data.record_files.channels) summarised too, e.g. orders.
    Returns:
        float32 array (len(records), len(SALES_FEATURE_NAMES) + 3 * len(channels)).

    >>> sales_calendar_matrix([{"sales": [0, 3, 5], "cutoff": "2011-06-05"}], LabelRule()).shape
    (1, 25)
    """
    K, a = rule.K, rule.alpha
    X = np.zeros((len(records), len(SALES_FEATURE_NAMES)), dtype=np.float32)
    S, L = len(SUMMARY_NAMES), N_LAST
    calendar: dict[str | None, np.ndarray] = {}  # few distinct cutoffs: compute each once
    for lo in range(0, len(records), SUMMARY_CHUNK):  # the summaries a chunk of records at a time, in one call
        X[lo:lo + SUMMARY_CHUNK, :S] = summary_stats_many([r["sales"] for r in records[lo:lo + SUMMARY_CHUNK]],
                                                          history, K, a)
    for i, r in enumerate(records):
        units = np.asarray(r["sales"], dtype=np.float64)
        X[i, S] = len(units)
        tail = np.log1p(units[-L:])
        X[i, S + 1 + L - len(tail) : S + 1 + L] = tail
        earlier = units[: -L][-K:]  # empty (mean 0) when the history is no longer than N_LAST
        X[i, S + 1 + L] = np.log((units[-K:].mean() + a) / ((earlier.mean() if len(earlier) else 0.0) + a))
        c = r.get("cutoff")
        if c not in calendar:
            calendar[c] = cutoff_calendar(r)
        X[i, -N_CALENDAR:] = calendar[c]
    if channels:
        unknown = sorted(set(channels) - {c.name for c in context_channels()})
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}; known: {[c.name for c in context_channels()]}")
        C = np.array([[s for name in channels for s in _channel_stats(r.get(name), K, a)] for r in records],
                     dtype=np.float32).reshape(len(records), -1)
        X = np.concatenate([X[:, :-N_CALENDAR], C, X[:, -N_CALENDAR:]], axis=1)
    return X


def _stack(records: Sequence[dict], field: str, n: int) -> np.ndarray:
    """(len(records), n) float64 of a per-period field, right-aligned; NaN where missing, padded or null."""
    out = np.full((len(records), n), np.nan)
    for i, r in enumerate(records):
        v = r.get(field)
        if v is not None and len(v):
            v = np.array([np.nan if x is None else x for x in v[-n:]], dtype=np.float64)
            out[i, n - len(v):] = v
    return out


def _mean(x: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN; NaN where a row has no value (no all-NaN warning)."""
    ok = ~np.isnan(x)
    cnt = ok.sum(1)
    return np.where(cnt > 0, np.where(ok, x, 0.0).sum(1) / np.maximum(cnt, 1), np.nan)


def _level_stats(x: np.ndarray, K: int, history: int) -> tuple[np.ndarray, np.ndarray]:
    """LEVEL_STATS of a (n, history) level channel: log last known / median, log mean of the newest K vs the K
    before (non-positive values count as unknown)."""
    x = x.copy()
    x[x <= 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: nothing known
        median = np.nanmedian(x, axis=1)
    last_idx = np.where(~np.isnan(x), np.arange(history), -1).max(1)
    last = np.where(last_idx >= 0, x[np.arange(len(x)), np.maximum(last_idx, 0)], np.nan)
    return np.log(last / median), np.log(_mean(x[:, -K:]) / _mean(x[:, -2 * K:-K]))


def channel_matrix(records: Sequence[dict], rule: LabelRule, history: int = 26) -> np.ndarray:
    """`channel_feature_names()` per record: calendar numbers, age and the summaries of every context channel.

    Args:
        records: normalised records (every context channel optional).
        rule: the label rule; its K and alpha shape the recent windows and log ratios.
        history: periods a full history holds.
    Returns:
        float32 array (len(records), len(channel_feature_names())); NaN where a channel is absent.

    >>> rec = {"sales": [1, 2, 3, 4, 5], "orders": [1, 1, 2, 2, 3], "cutoff": "2011-06-05", "first_sale": "2011-05-08"}
    >>> X = channel_matrix([rec], LabelRule())
    >>> names = channel_feature_names()
    >>> X.shape == (1, len(names)), float(X[0, 2]), bool(np.isnan(X[0, names.index("customers_log_recent")]))
    (True, 4.0, True)
    """
    K, a = rule.K, rule.alpha
    cols: dict[str, np.ndarray] = {}
    dates = [dt.date.fromisoformat(r["cutoff"]) if r.get("cutoff") else None for r in records]
    cols["week_of_year"] = np.array([d.isocalendar()[1] if d else np.nan for d in dates], dtype=np.float64)
    cols["month"] = np.array([d.month if d else np.nan for d in dates], dtype=np.float64)
    cols["age_periods"] = np.array(
        [(d - dt.date.fromisoformat(r["first_sale"])).days / 7 if d and r.get("first_sale") else np.nan
         for d, r in zip(dates, records)])  # weeks; the benchmark's periods
    units = _stack(records, "sales", history)
    recent = {"sales": _mean(units[:, -K:])}
    whole = {"sales": _mean(units)}
    for c in count_channels():
        x = _stack(records, c.name, history)
        r_, p_, all_ = _mean(x[:, -K:]), _mean(x[:, -2 * K:-K]), _mean(x)
        recent[c.name], whole[c.name] = r_, all_
        stats = (np.log1p(r_), np.log1p(all_), np.log((r_ + a) / (p_ + a)), np.log((r_ + a) / (all_ + a)),
                 *(np.log1p(x[:, -j]) for j in range(4, 0, -1)))
        cols.update({f"{c.name}_{s}": v for s, v in zip(COUNT_STATS, stats)})
    for name, num, den in RATIOS:
        if num in recent and den in recent:
            src = whole if name.endswith("_all") else recent
            cols[name] = np.log((src[num] + a) / (src[den] + a))
    for t in count_channels():
        if t.build == "total" and t.of == "sales":  # the product's units / the shop's, newest K vs the whole history
            cols[f"share_of_{t.name.removesuffix('_sales')}_recent_vs_all"] = (
                np.log((recent["sales"] + a) / (recent[t.name] + a)) - np.log((whole["sales"] + a) / (whole[t.name] + a)))
    for c in level_channels():
        cols[f"{c.name}_rel_median"], cols[f"{c.name}_change_recent_vs_previous"] = _level_stats(
            _stack(records, c.name, history), K, history)
    return np.stack([cols[c] for c in channel_feature_names()], axis=1).astype(np.float32).reshape(len(records), -1)


def feature_matrix(records: Sequence[dict], rule: LabelRule, history: int = 26) -> np.ndarray:
    """The gbm_all features of records: `feature_names()` per record (float32, NaN where a channel is absent)."""
    return np.hstack([sales_calendar_matrix(records, rule, history), channel_matrix(records, rule, history)])
