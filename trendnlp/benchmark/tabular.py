"""The shared interface of the tabular baselines and their sales feature matrix.

Every baseline has a `name`, `fit(train_records, val_records=None) -> self` and `predict(records) -> list[str]`
on normalised record dicts; the probabilistic ones add `predict_proba` in LABELS order. baselines.py (rules,
logistic regressions, HistGradientBoosting, TF-IDF) and gbm.py (LightGBM on every channel) both build on this.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score

from trendnlp.labels import LABELS, LabelRule


def _labels(records: Sequence[dict]) -> list[str]:
    return [r["label"] for r in records]


def _has_labels(records: Sequence[dict] | None) -> bool:
    return bool(records) and all(r.get("label") in LABELS for r in records)


def _macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    return float(f1_score(y_true, y_pred, average="macro", labels=list(LABELS), zero_division=0))


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
