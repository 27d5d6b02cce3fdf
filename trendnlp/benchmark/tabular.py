"""The shared interface of the tabular baselines and their sales feature matrix.

Every baseline has a `name`, `fit(train_records, val_records=None) -> self` and `predict(records) -> list[str]`
on normalised record dicts; the probabilistic ones add `predict_proba` in LABELS order. baselines.py (rules,
logistic regressions, HistGradientBoosting, TF-IDF) and gbm.py (LightGBM on every channel) both build on this.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score

from trendnlp.data.channels import context_channels
from trendnlp.data.features import N_CALENDAR, SUMMARY_NAMES, cutoff_calendar, summary_stats
from trendnlp.labels import LABELS, LabelRule

N_LAST = 8  # raw log1p units of the newest periods given to the sales models next to the summary


def _labels(records: Sequence[dict]) -> list[str]:
    return [r["label"] for r in records]


def _has_labels(records: Sequence[dict] | None) -> bool:
    return bool(records) and all(r.get("label") in LABELS for r in records)


def _macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    return float(f1_score(y_true, y_pred, average="macro", labels=list(LABELS), zero_division=0))


SALES_FEATURE_NAMES = (
    *SUMMARY_NAMES,
    "history_periods",  # observed periods (young products have fewer)
    *(f"log1p_units_t-{i}" for i in range(N_LAST - 1, -1, -1)),  # newest N_LAST periods, 0 before the history
    "change_recent_vs_8_ago",  # rule's log ratio of the newest K periods vs the K ending N_LAST periods earlier
    "sin_week", "cos_week", "sin_month", "cos_month",  # of the cutoff; always the last N_CALENDAR columns
)


CHANNEL_STATS = ("log_recent", "change_recent_vs_previous", "change_recent_vs_all")


def channel_feature_names(channels: Sequence[str]) -> list[str]:
    """Columns `sales_calendar_matrix` adds for context channels (before the calendar), e.g. orders_log_recent.

    >>> channel_feature_names(["orders"])[0]
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


def sales_calendar_matrix(records: Sequence[dict], rule: LabelRule, history: int = 26,
                          channels: Sequence[str] = ()) -> np.ndarray:
    """Sales summary, the newest log1p units and the cutoff's calendar: SALES_FEATURE_NAMES per record, with
    `channel_feature_names(channels)` inserted before the calendar columns.

    Args:
        records: normalised records.
        rule: label rule; its K and alpha shape the summary statistics.
        history: the periods a full history holds (scales `history_fraction`).
        channels: context channels of the records (trendnlp.data.channels) summarised too, e.g. orders.
    Returns:
        float32 array (len(records), len(SALES_FEATURE_NAMES) + 3 * len(channels)).

    >>> sales_calendar_matrix([{"sales": [0, 3, 5], "cutoff": "2011-06-05"}], LabelRule()).shape
    (1, 25)
    """
    K, a = rule.K, rule.alpha
    X = np.zeros((len(records), len(SALES_FEATURE_NAMES)), dtype=np.float32)
    S, L = len(SUMMARY_NAMES), N_LAST
    calendar: dict[str | None, np.ndarray] = {}  # few distinct cutoffs: compute each once
    for i, r in enumerate(records):
        units = np.asarray(r["sales"], dtype=np.float64)
        X[i, :S] = summary_stats(units, history, K, a)
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


def _in_label_order(model, proba: np.ndarray) -> np.ndarray:
    """Columns of a scikit-learn `predict_proba` reordered to LABELS (a class absent from training gets 0)."""
    out = np.zeros((len(proba), len(LABELS)))
    for j, c in enumerate(model.classes_):  # a Pipeline exposes its last step's classes_
        out[:, LABELS.index(c)] = proba[:, j]
    return out


class _Baseline:
    """The common interface. `__init__` only stores arguments; what `fit` learns ends in `_`."""

    name = "baseline"

    def __init__(self, rule: LabelRule | None = None, seed: int = 0, channels: Sequence[str] = ()):
        self.rule = rule or LabelRule()  # the benchmark's label rule (K, alpha, tau)
        self.seed = seed  # random_state of the learned baselines
        self.channels = tuple(channels)  # context channels the sales-feature models also get (e.g. orders)

    def fit(self, train_records: Sequence[dict], val_records: Sequence[dict] | None = None) -> "_Baseline":
        """Learn from labelled training records.

        Args:
            train_records: labelled normalised records.
            val_records: labelled records used only to choose hyper-parameters; None keeps the defaults.
        Returns:
            self.
        """
        return self

    def predict(self, records: Sequence[dict]) -> list[str]:
        """Labels (strings from LABELS), one per record."""
        raise NotImplementedError
