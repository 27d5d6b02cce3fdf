"""Per-record features: the text string fed to BERT, and the sales tensors fed to the LSTM.

Sales per period (T = history; left-padded, since the newest period must sit at the LSTM's last step):
    channel 0   scaled units (see SalesConfig.scaling)
    channel 1   observed mask (1 for a real period, 0 for padding)
    channel 2-5 sin/cos week of year, sin/cos month of the period's end date (zeros without cutoff)
    then the context channels the config feeds (trendnlp.data.channels.fed_channels: SalesConfig.price_channels,
    market_channels and `channels`), each as its registry entry encodes it; `sales_channel_names` lists them
Summary statistics (SUMMARY_NAMES) are computed on the raw units and concatenated to the LSTM state.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np

from trendnlp.config import SalesConfig, TextConfig
from trendnlp.data.channels import fed_channels

SUMMARY_NAMES = (
    "log_level_recent",  # log1p(mean of last K periods)
    "log_level_all",  # log1p(mean of the whole history)
    "change_recent_vs_previous",  # label rule's log ratio of last K vs the K before (persistence signal)
    "change_recent_vs_all",  # last K vs whole-history mean (mean-reversion signal)
    "slope_log",  # least-squares slope of log1p(units) per period over the observed history
    "slope_log_recent",  # same over the last 2K periods
    "zero_share",  # share of periods with zero units
    "history_fraction",  # observed periods / history (short histories = new products)
    "log_last",  # log1p(units of the newest period)
    "cv",  # coefficient of variation of units (burstiness)
    "log_max_ratio",  # last K mean vs the history's peak
)
N_CALENDAR = 4
N_SALES_CHANNELS = 2 + N_CALENDAR


def sales_channel_names(cfg: SalesConfig) -> list[str]:
    """Names of the per-period channels this config builds, in order (stored with the saved model).

    >>> sales_channel_names(SalesConfig(price_channels=True))[-2:]
    ['price_rel', 'price_change']
    """
    base = ["units", "observed", "sin_week", "cos_week", "sin_month", "cos_month"]
    return base + [name for ch in fed_channels(cfg) for name in ch.features]


def n_sales_channels(cfg: SalesConfig) -> int:
    """C, the channels per period of `sales_features` under this config."""
    return len(sales_channel_names(cfg))


def build_text(record: dict, cfg: TextConfig) -> str:
    """Title, description and the newest reviews as one string (empty when the record has no text).

    >>> build_text({"title": "Red mug", "description": "", "reviews": ["nice"]}, TextConfig())
    'Red mug. Reviews: nice'
    """
    parts = [p.strip() for p in (record.get("title") or "", record.get("description") or "") if p and p.strip()]
    text = ". ".join(parts)
    if cfg.include_reviews and cfg.max_reviews > 0:
        reviews = [r.strip() for r in (record.get("reviews") or [])[: cfg.max_reviews] if r and r.strip()]
        if reviews:
            text = (text + ". " if text else "") + "Reviews: " + " | ".join(reviews)
    return text


def period_ends(cutoff: str | None, n: int, freq: str) -> list[dt.date] | None:
    """End dates of the n periods ending at cutoff (oldest first)."""
    if not cutoff:
        return None
    end = dt.date.fromisoformat(cutoff)
    if freq == "W":
        return [end - dt.timedelta(weeks=n - 1 - i) for i in range(n)]
    if freq == "D":
        return [end - dt.timedelta(days=n - 1 - i) for i in range(n)]
    out = []  # monthly: month ends going back from the cutoff's month
    y, m = end.year, end.month
    for _ in range(n):
        nxt = dt.date(y + (m == 12), m % 12 + 1, 1)
        out.append(nxt - dt.timedelta(days=1))
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return out[::-1]


def calendar_features(dates: Sequence[dt.date]) -> np.ndarray:
    """(n, 4) sin/cos of week-of-year and month."""
    week = np.array([d.isocalendar()[1] for d in dates], dtype=np.float32)
    month = np.array([d.month for d in dates], dtype=np.float32)
    w, m = 2 * np.pi * (week - 1) / 52.0, 2 * np.pi * (month - 1) / 12.0
    return np.stack([np.sin(w), np.cos(w), np.sin(m), np.cos(m)], axis=1)


def scale_units(units: np.ndarray, scaling: str) -> np.ndarray:
    x = np.log1p(units)
    if scaling == "log1p_center":
        x = x - x.mean()  # per-series: shape of the curve, not its level (level goes to the summary)
    return x


def summary_stats(units: np.ndarray, history: int, K: int, alpha: float) -> np.ndarray:
    """The SUMMARY_NAMES vector for one series of raw units (oldest first)."""
    n = len(units)
    recent = units[-K:].mean()
    prev = units[-2 * K : -K].mean() if n > K else recent
    allm = units.mean()
    logu = np.log1p(units)

    def slope(y: np.ndarray) -> float:
        if len(y) < 2:
            return 0.0
        t = np.arange(len(y), dtype=float)
        t -= t.mean()
        return float((t * (y - y.mean())).sum() / (t * t).sum())

    std = units.std()
    return np.array([
        math.log1p(recent), math.log1p(allm),
        math.log((recent + alpha) / (prev + alpha)), math.log((recent + alpha) / (allm + alpha)),
        slope(logu), slope(logu[-2 * K :]),
        float((units == 0).mean()), n / history, math.log1p(units[-1]),
        std / (allm + 1e-6) if allm > 0 else 0.0, math.log((recent + alpha) / (units.max() + alpha)),
    ], dtype=np.float32)


def summary_stats_many(series: Sequence[Sequence[float]], history: int, K: int, alpha: float) -> np.ndarray:
    """`summary_stats` of many series at once: (N, len(SUMMARY_NAMES)) float32, vectorised per history length.

    >>> s = [[0, 3, 5, 1, 2], [4.0, 4.0], [1, 2, 3, 4, 5]]
    >>> bool(np.allclose(summary_stats_many(s, 26, 4, 1.0), [summary_stats(np.asarray(x, float), 26, 4, 1.0)
    ...                                                      for x in s], atol=1e-6))
    True
    """
    lengths = np.fromiter((len(s) for s in series), dtype=np.int64, count=len(series))
    values = np.concatenate([np.asarray(s, dtype=np.float64) for s in series]) if len(series) else np.zeros(0)
    return summary_stats_flat(values, np.concatenate([[0], np.cumsum(lengths)]), history, K, alpha)


def summary_stats_flat(values: np.ndarray, offsets: np.ndarray, history: int, K: int, alpha: float) -> np.ndarray:
    """`summary_stats_many` of series stored flat, as an Arrow list column is: series i is
    values[offsets[i]:offsets[i + 1]]. No Python step per series.

    >>> v, o = np.array([0, 3, 5, 1, 2, 4.0, 4.0]), np.array([0, 5, 7])
    >>> bool(np.allclose(summary_stats_flat(v, o, 26, 4, 1.0), [summary_stats(v[:5], 26, 4, 1.0),
    ...                                                         summary_stats(v[5:], 26, 4, 1.0)], atol=1e-6))
    True
    """
    ends = np.asarray(offsets[1:], dtype=np.int64)
    lengths = np.minimum(ends - np.asarray(offsets[:-1], dtype=np.int64), history)
    out = np.zeros((len(lengths), len(SUMMARY_NAMES)), dtype=np.float32)
    for n in np.unique(lengths).tolist():
        rows = np.nonzero(lengths == n)[0]
        U = np.asarray(values, dtype=np.float64)[ends[rows, None] - n + np.arange(n)]  # (m, n): the newest n
        out[rows] = _summary_block(U, history, K, alpha)
    return out


def _summary_block(U: np.ndarray, history: int, K: int, alpha: float) -> np.ndarray:
    """SUMMARY_NAMES of m series of one length n, U (m, n); the same formulas as `summary_stats`."""
    m, n = U.shape
    recent = U[:, -K:].mean(axis=1)
    prev = U[:, -2 * K:-K].mean(axis=1) if n > K else recent
    allm = U.mean(axis=1)
    logu = np.log1p(U)

    def slope(y: np.ndarray) -> np.ndarray:  # (m, k) -> (m,)
        if y.shape[1] < 2:
            return np.zeros(m)
        t = np.arange(y.shape[1], dtype=float)
        t -= t.mean()
        return (t * (y - y.mean(axis=1, keepdims=True))).sum(axis=1) / (t * t).sum()

    std = U.std(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = np.where(allm > 0, std / (allm + 1e-6), 0.0)
    return np.stack([
        np.log1p(recent), np.log1p(allm),
        np.log((recent + alpha) / (prev + alpha)), np.log((recent + alpha) / (allm + alpha)),
        slope(logu), slope(logu[:, -2 * K:]),
        (U == 0).mean(axis=1), np.full(m, n / history), np.log1p(U[:, -1]),
        cv, np.log((recent + alpha) / (U.max(axis=1) + alpha)),
    ], axis=1).astype(np.float32)


def sales_features(record: dict, cfg: SalesConfig, K: int = 4, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-period channels (history, n_sales_channels(cfg)) and summary vector (len(SUMMARY_NAMES),)."""
    units = np.asarray(record["sales"], dtype=np.float64)[-cfg.history :]
    n, T = len(units), cfg.history
    x = np.zeros((T, n_sales_channels(cfg)), dtype=np.float32)
    x[T - n :, 0] = scale_units(units, cfg.scaling)
    x[T - n :, 1] = 1.0
    if cfg.calendar:
        dates = period_ends(record.get("cutoff"), T, record.get("freq") or "W")
        if dates is not None:
            x[:, 2:N_SALES_CHANNELS] = calendar_features(dates)  # padded periods still have a date
    col = N_SALES_CHANNELS
    for ch in fed_channels(cfg):  # only the record's own periods: its window ends at the cutoff
        x[T - n:, col:col + ch.width] = ch.encode(record.get(ch.name), n)
        col += ch.width
    return x, summary_stats(units, cfg.history, K, alpha)


def cutoff_calendar(record: dict) -> np.ndarray:
    """(4,) calendar features of the cutoff itself (zeros when unknown); used by baselines and plots."""
    c = record.get("cutoff")
    return calendar_features([dt.date.fromisoformat(c)])[0] if c else np.zeros(N_CALENDAR, dtype=np.float32)
