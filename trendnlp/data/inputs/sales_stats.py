"""Summary statistics of sales windows, written once: `summary_stats_batch` over a padded, masked (B, T) batch,
one formula for numpy arrays (the collator, the Arrow build, the boosting features: float64, then float32) and
torch tensors (explain: differentiable for Integrated Gradients). `summary_stats`, `summary_stats_many` and
`summary_stats_flat` pad one series, a list of series or an Arrow list column for it; `sales_inputs` rebuilds the
model's sales tensors from log1p(units) with it, for explain.

Series are left-padded: the newest period sits at position T - 1, a series of n periods fills the last n.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

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


def summary_stats_batch(units, mask, history: int, K: int, alpha: float, log_units=None):
    """The SUMMARY_NAMES of B left-padded series: one formula for numpy arrays and torch tensors (in the dtype of
    `units`; differentiable in torch, which explain's Integrated Gradients need).

    Args:
        units: (B, T) raw units (>= 0), anything where mask is 0; a numpy array or a torch tensor.
        mask: (B, T) 1 (or True) for an observed period; observed periods are the last n of each row.
        history: the periods a full history holds (scales `history_fraction`).
        K, alpha: the label rule's K and alpha (recent window, smoothing of the log ratios).
        log_units: (B, T) log1p(units) when the caller has it (explain differentiates with respect to it).
    Returns:
        (B, len(SUMMARY_NAMES)), an array or a tensor as `units`. An empty row (n = 0) gives finite values (those
        of an all-zero history, with zero_share 0 and history_fraction 1 / history).

    >>> s = summary_stats_batch(np.array([[0.0, 2, 4], [0, 0, 3]]), np.array([[1, 1, 1], [0, 0, 1]]), 26, 4, 1.0)
    >>> s.shape, round(float(s[1, SUMMARY_NAMES.index("history_fraction")]), 4)
    ((2, 11), 0.0385)
    """
    is_torch = isinstance(units, torch.Tensor)
    xp = torch if is_torch else np
    m = mask.to(units.dtype) if is_torch else np.asarray(mask).astype(units.dtype)
    u = units * m
    z = xp.log1p(u) if log_units is None else log_units

    n = m.sum(1).clip(min=1.0)  # (B,)
    recent_w, last_2k = _newest(m, K), _newest(m, 2 * K)  # masks of the newest K and 2K observed periods

    def mean(v, w):
        return (v * w).sum(1) / w.sum(1).clip(min=1.0)

    recent = mean(u, recent_w)
    prev = xp.where(n > K, mean(u, last_2k - recent_w), recent)
    allm = u.sum(1) / n
    t = xp.ones_like(z).cumsum(1) - 1  # 0 .. T-1 in each row

    def slope(w):  # least-squares slope of z over the periods w marks; 0 with fewer than two
        cnt = w.sum(1).clip(min=1.0)
        tc = (t - ((t * w).sum(1) / cnt)[:, None]) * w
        yc = (z - ((z * w).sum(1) / cnt)[:, None]) * w
        den = (tc * tc).sum(1)
        return xp.where(w.sum(1) >= 2, (tc * yc).sum(1) / den.clip(min=1e-12), xp.zeros_like(den))

    var = (((u - allm[:, None]) * m) ** 2).sum(1) / n
    # sqrt has an infinite slope at 0: a constant, one-period or all-zero history (variance exactly 0) would
    # turn every saliency into NaN (0 * inf), so the root is taken only where the variance is positive
    positive = var > 0
    std = xp.where(positive, xp.sqrt(xp.where(positive, var, xp.ones_like(var))), xp.zeros_like(var))
    cv = xp.where(allm > 0, std / (allm + 1e-6), xp.zeros_like(std))
    peak = u.max(1).values if is_torch else u.max(1)
    return xp.stack([
        xp.log1p(recent), xp.log1p(allm),
        xp.log((recent + alpha) / (prev + alpha)), xp.log((recent + alpha) / (allm + alpha)),
        slope(m), slope(last_2k),
        ((u == 0) * m).sum(1) / n, n / history, z[:, -1],
        cv, xp.log((recent + alpha) / (peak + alpha)),
    ], axis=1)


def _newest(m, k: int):
    """The mask m (B, T) kept on its last k positions: the newest k observed periods (all when fewer)."""
    w = m * 0
    w[:, -k:] = m[:, -k:]
    return w


def summary_stats(units: np.ndarray, history: int, K: int, alpha: float) -> np.ndarray:
    """The SUMMARY_NAMES vector (float32) of one series of raw units (oldest first, every period observed).

    >>> summary_stats(np.array([0.0, 3, 5, 1, 2]), 26, 4, 1.0).shape
    (11,)
    """
    u = np.asarray(units, dtype=np.float64)[None]
    return summary_stats_batch(u, np.ones_like(u), history, K, alpha)[0].astype(np.float32)


def summary_stats_many(series: Sequence[Sequence[float]], history: int, K: int, alpha: float) -> np.ndarray:
    """`summary_stats` of many series at once (each cut to its newest `history` periods): (N, S) float32.

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
    width = max(int(lengths.max(initial=0)), 1)
    pos = np.arange(width)
    observed = pos >= width - lengths[:, None]  # (N, width), left-padded
    values = np.asarray(values, dtype=np.float64)
    units = np.where(observed, values[np.where(observed, ends[:, None] - width + pos, 0)] if len(values) else 0.0, 0.0)
    return summary_stats_batch(units, observed, history, K, alpha).astype(np.float32)


def sales_inputs(z: torch.Tensor, mask: torch.Tensor, extra: torch.Tensor, scaling: str, history: int, K: int,
                 alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's sales tensors from log1p(units), differentiably (features.sales_features in torch).

    Args:
        z: (N, T) log1p(units), left-padded with zeros where mask is 0.
        mask: (N, T) 1 for an observed period.
        extra: (N, T, C - 2) the non-sales channels (calendar), passed through.
        scaling, history, K, alpha: SalesConfig.scaling, SalesConfig.history, label rule K and alpha.
    Returns:
        sales (N, T, C) and summary (N, len(SUMMARY_NAMES)), equal to the collator's for the same records.
    """
    m = mask.to(z.dtype)
    n = m.sum(1).clamp(min=1.0)  # (N,)
    x0 = z - ((z * m).sum(1) / n).unsqueeze(1) if scaling == "log1p_center" else z
    sales = torch.cat([(x0 * m).unsqueeze(-1), m.unsqueeze(-1), extra.to(z.dtype)], dim=-1)
    return sales, summary_stats_batch(torch.expm1(z), m, history, K, alpha, log_units=z)
