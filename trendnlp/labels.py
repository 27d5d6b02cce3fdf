"""The label rule (docs/data.md): a pure function from past and future sales to a trend label.

    recent = mean(sales[-K:]);  future = mean(future_sales[:F])
    change = log((future + alpha) / (recent + alpha))
    rising if change >= log(1 + tau); falling if change <= -log(1 + tau); else stable
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trendnlp.errors import ConfigError

LABELS: tuple[str, ...] = ("rising", "falling", "stable")  # the order of every logit and probability column
# what each parameter means, for the config's field help and the command-line options (defaults: LabelRule's)
RULE_HELP = {"K": "history periods averaged into `recent`", "F": "future periods averaged into `future`",
             "alpha": "additive smoothing of the log ratio", "tau": "relative change threshold"}


@dataclass
class LabelRule:
    """Parameters of the trend label rule; saved with every model."""

    K: int = 4  # periods of history averaged into `recent`
    F: int = 4  # periods of future averaged into `future`
    alpha: float = 1.0  # additive smoothing, so zero-sales products get a finite change
    tau: float = 0.25  # relative change threshold: +25% is rising, -20% (1/1.25) is falling

    def __post_init__(self) -> None:
        for name in ("K", "F"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"label rule: K and F must be whole numbers >= 1, got {name}={v!r}")
        for name in ("alpha", "tau"):  # `not x > 0` also catches NaN, which would make every label 'stable'
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not (0 < v < math.inf):
                raise ConfigError(f"label rule: {name} must be a finite number > 0, got {v!r}")

    def change(self, sales: Sequence[float], future_sales: Sequence[float]) -> float:
        """Log ratio of future to recent mean sales, smoothed by alpha."""
        if len(sales) == 0 or len(future_sales) == 0:
            raise ValueError("label rule: sales and future_sales must both be non-empty")
        recent = float(np.mean(np.asarray(sales, dtype=float)[-self.K :]))
        future = float(np.mean(np.asarray(future_sales, dtype=float)[: self.F]))
        return math.log((future + self.alpha) / (recent + self.alpha))

    def label(self, sales: Sequence[float], future_sales: Sequence[float]) -> str:
        """Apply the rule.

        Args:
            sales: past units, oldest -> newest.
            future_sales: the following periods' units.
        Returns:
            "rising", "falling" or "stable".

        >>> LabelRule().label([0, 0, 0, 0], [2, 2, 2, 2])
        'rising'
        """
        return label_from_change(self.change(sales, future_sales), self.tau)

    def labels_vectorized(self, recent_mean: np.ndarray, future_mean: np.ndarray) -> np.ndarray:
        """Rule on precomputed means (arrays of shape (N,)); returns an array of label strings."""
        change = np.log((np.asarray(future_mean, float) + self.alpha) / (np.asarray(recent_mean, float) + self.alpha))
        return labels_from_changes(change, self.tau)


DEFAULT_RULE = LabelRule()  # the defaults that the config and the command line show


# Plain float comparisons, exactly as the rule is written: the published Online Retail label counts (docs/benchmark.md)
# depend on it (e.g. 4 -> 3 units, log(0.8) = -0.22314355131420971 is a hair above -log(1.25), so stable).
def label_from_change(change: float, tau: float) -> str:
    thr = math.log1p(tau)
    if change >= thr:
        return "rising"
    if change <= -thr:
        return "falling"
    return "stable"


def labels_from_changes(change: np.ndarray, tau: float) -> np.ndarray:
    thr = math.log1p(tau)
    out = np.full(change.shape, "stable", dtype=object)
    out[change >= thr] = "rising"
    out[change <= -thr] = "falling"
    return out
