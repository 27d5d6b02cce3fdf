"""Calibration: per-class logit offsets (decisions) and temperature scaling (honest probabilities), fitted on
validation; ECE, Brier score, reliability bins and coverage/accuracy to measure them.

Per-class logit offsets fitted on validation: a correction for class priors that drift over time.

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


# ---- temperature scaling -------------------------------------------------------------------------
# After the offsets have moved the decisions, one temperature T makes the probabilities honest:
# p = softmax((logits + offsets) / T). T > 0 never changes the argmax, so it cannot undo the offsets' gain
# in macro-F1; it only sharpens (T < 1) or softens (T > 1) the model's confidence. T is fitted by
# minimising the validation negative log-likelihood (Guo et al., 2017, "On Calibration of Modern Neural
# Networks"); the NLL is convex in 1/T, so a bounded scalar search finds the optimum.
T_BOUNDS = (0.05, 20.0)


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / T): the probabilities of the same logits at temperature T.

    Since log(probs) equals the logits up to a per-row constant, this re-tempers already computed
    probabilities exactly (up to the 1e-12 clip); temper(p, 1 / T) undoes a temperature T.

    >>> temper(np.array([[0.8, 0.2]]), 2.0).round(3).tolist()
    [[0.667, 0.333]]
    """
    z = biased_scores(np.asarray(probs, dtype=np.float64)) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The temperature T minimising the NLL of softmax(log(probs) / T) on labelled records.

    Args:
        probs: (n, C) probabilities of the model with its logit offsets applied (validation records).
        y: (n,) true class indices.
        bounds: search interval for T.
    Returns:
        T as a float (1.0 when there are no records).

    >>> p = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])  # 75% right at 90% confidence
    >>> y = np.array([0, 1, 0, 1])
    >>> round(fit_temperature(p, y), 2)  # softer: 0.9 becomes 0.75
    2.0
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return 1.0
    logp = biased_scores(np.asarray(probs, dtype=np.float64))

    def nll(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1))).mean())

    res = minimize_scalar(nll, bounds=tuple(np.log(bounds)), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(res.x))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the |accuracy - confidence| gap of the top class, averaged over equal-width confidence bins
    weighted by their share of records (Guo et al., 2017).

    Args:
        probs: (n, C) probabilities.
        y: (n,) true class indices.
        n_bins: equal-width bins over [0, 1].
    Returns:
        ECE in [0, 1].

    >>> expected_calibration_error(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1]))
    0.4
    """
    conf, correct = _top(probs, y)
    bins = reliability_bins(probs, y, n_bins)
    if not len(conf):
        return 0.0
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / len(conf))


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> list[dict]:
    """Per equal-width bin of top-class confidence: lo, hi, count, mean confidence and accuracy (NaN if empty).

    >>> reliability_bins(np.array([[0.9, 0.1]]), np.array([0]), 2)[1]["accuracy"]
    1.0
    """
    conf, correct = _top(probs, y)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)  # (lo, hi] bins, 0 in the first
    out = []
    for b in range(n_bins):
        m = which == b
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": int(m.sum()),
                    "confidence": float(conf[m].mean()) if m.any() else float("nan"),
                    "accuracy": float(correct[m].mean()) if m.any() else float("nan")})
    return out


def brier_score(probs: np.ndarray, y: np.ndarray) -> float:
    """Multi-class Brier score: mean over records of sum_c (p_c - [y = c])^2 (0 is perfect, 2 the worst).

    >>> brier_score(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([0, 0]))
    0.25
    """
    p = np.asarray(probs, dtype=np.float64)
    if not len(p):
        return 0.0
    onehot = np.eye(p.shape[1])[np.asarray(y, dtype=np.int64)]
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def calibration_report(probs: np.ndarray, y: np.ndarray, temperature: float = 1.0, n_bins: int = 15) -> dict:
    """ECE and Brier score of a model's probabilities before and after its temperature.

    Args:
        probs: (n, C) probabilities as the model outputs them (temperature applied).
        y: (n,) true class indices.
        temperature: the model's T; the "before" numbers undo it (temper(probs, 1 / T)).
        n_bins: ECE bins.
    Returns:
        {"temperature", "n_bins", "ece_before", "ece_after", "brier_before", "brier_after",
         "bins_before", "bins_after"}

    >>> r = calibration_report(np.array([[0.6, 0.4], [0.7, 0.3]]), np.array([0, 1]))
    >>> r["ece_before"] == r["ece_after"]
    True
    """
    before = temper(probs, 1.0 / temperature) if temperature != 1.0 else np.asarray(probs, dtype=np.float64)
    after = np.asarray(probs, dtype=np.float64)
    return {"temperature": float(temperature), "n_bins": n_bins,
            "ece_before": expected_calibration_error(before, y, n_bins),
            "ece_after": expected_calibration_error(after, y, n_bins),
            "brier_before": brier_score(before, y), "brier_after": brier_score(after, y),
            "bins_before": reliability_bins(before, y, n_bins), "bins_after": reliability_bins(after, y, n_bins)}


def coverage_accuracy(probs: np.ndarray, y: np.ndarray, thresholds: np.ndarray | list[float]) -> list[dict]:
    """Coverage (share of records whose top probability >= P) and accuracy on those, per threshold P.

    >>> coverage_accuracy(np.array([[0.9, 0.1], [0.55, 0.45]]), np.array([0, 1]), [0.0, 0.6])
    [{'min_confidence': 0.0, 'coverage': 1.0, 'n': 2, 'accuracy': 0.5}, {'min_confidence': 0.6, 'coverage': 0.5, 'n': 1, 'accuracy': 1.0}]
    """
    conf, correct = _top(probs, y)
    out = []
    for t in thresholds:
        m = conf >= t
        out.append({"min_confidence": float(t), "coverage": float(m.mean()) if len(m) else 0.0, "n": int(m.sum()),
                    "accuracy": float(correct[m].mean()) if m.any() else float("nan")})
    return out


def _top(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    return p.max(axis=1) if len(p) else np.zeros(0), (p.argmax(axis=1) == np.asarray(y)) if len(p) else np.zeros(0)
