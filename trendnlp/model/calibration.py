"""Per-class logit offsets fitted on validation: a correction for class priors that drift over time.

A model trained on older cutoffs learns the class mix of that period (on Online Retail: more falling in
summer), while later periods may have another (more rising before Christmas). Adding one offset per class
to the logits moves the decision boundaries without touching what the model learned; the offsets that
maximise validation macro-F1 are found by coordinate ascent over a grid (the last class is the reference,
offset 0, since only differences matter). The model applies them at inference (`TrendClassifier.logit_bias`).
"""
from __future__ import annotations

import itertools

import numpy as np

GRID = np.round(np.linspace(-1.5, 1.5, 61), 4)  # steps of 0.05 in log-odds


def macro_f1_from_predictions(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over all n_classes (a class never true nor predicted scores 0), fast enough for a grid search.

    >>> macro_f1_from_predictions(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]), 3)
    0.7777777777777777
    """
    cm = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)
    return float(f1.mean())


def biased_scores(probs: np.ndarray, bias: np.ndarray | float = 0.0) -> np.ndarray:
    """log(probs) + bias: the scores whose argmax is the prediction of a model with logit offsets `bias`.

    >>> biased_scores(np.array([[0.6, 0.4]]), np.array([0.0, 0.5])).argmax(1).tolist()
    [1]
    """
    return np.log(np.clip(probs, 1e-12, 1.0)) + bias


def fit_logit_bias(probs: np.ndarray, y: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """Offsets b (n_classes,) maximising macro-F1 of argmax(log(probs) + b) on labelled records.

    Every combination of grid values for the first C - 1 classes is tried (61 x 61 for the three trends).

    Args:
        probs: (n, C) class probabilities of the uncorrected model.
        y: (n,) true class indices.
        grid: candidate offsets per class.
    Returns:
        float32 offsets; zeros unless a change raises macro-F1 (among equal scores the smallest total move wins).

    >>> p = np.array([[0.6, 0.4, 0.0], [0.55, 0.45, 0.0], [0.1, 0.2, 0.7]])
    >>> fit_logit_bias(p, np.array([0, 1, 2])).round(2).tolist()
    [-0.25, 0.0, 0.0]
    """
    n, C = probs.shape
    if n == 0 or C < 2:
        return np.zeros(C, dtype=np.float32)
    if len(grid) ** (C - 1) > 250_000:
        raise ValueError(f"fit_logit_bias: {len(grid)} grid values over {C - 1} classes is too large a search")
    logp = biased_scores(probs)
    y = np.asarray(y, dtype=np.int64)
    candidates = sorted(itertools.product(grid, repeat=C - 1), key=lambda b: (sum(abs(v) for v in b), b))
    best, bias = -1.0, np.zeros(C)
    for b in candidates:  # the zero vector comes first
        trial = np.array([*b, 0.0])
        score = macro_f1_from_predictions(y, (logp + trial).argmax(1), C)
        if score > best + 1e-12:
            best, bias = score, trial
    return bias.astype(np.float32)
