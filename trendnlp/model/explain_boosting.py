"""The boosting branch's part of an explanation (hybrid and boosting-only models): the blend weight, each branch's
probabilities, and LightGBM's own exact tree SHAP values (`pred_contrib`) of the predicted class per feature.

The SHAP values are in the booster's raw-score units (the class's softmax logit): base (the expected raw score
over the training data) + the sum of every feature's contribution = the raw score of that class for the record.
They explain the boosting branch alone; the neural attributions beside them (model/explain.py) explain the
neural branch; the blend weight says how much of each enters the saved model's probabilities.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOP_FEATURES = 8


def boosting_parts(model, recs: Sequence[dict], pred: np.ndarray, top_features: int = TOP_FEATURES) -> list[dict]:
    """One "boosting" dict per record.

    Args:
        model: a runtime with a `blend` (hybrid or boosting-only).
        recs: validated records.
        pred: (n,) the saved model's predicted class indices (in `model.labels` order).
        top_features: features listed per record (largest |contribution|).
    Returns:
        dicts {blend_weight, probabilities (boosting alone), neural_probabilities (hybrid) or None, class,
        base, raw_score, top_features: [{feature, value, contribution}]} in record order.
    """
    blend, labels = model.blend, model.labels
    branch = blend.branch
    p_boost = model.predict_proba(recs, branch="boosting")
    p_neural = model.predict_proba(recs, branch="neural") if model.has_neural else None
    contrib = branch.contributions(recs)  # (n, C, F + 1)
    X = branch.matrix(recs)
    out = []
    for i in range(len(recs)):
        c = int(pred[i])
        row = contrib[i, c]
        order = np.argsort(-np.abs(row[:-1]), kind="stable")[:top_features]
        out.append({
            "blend_weight": blend.weight if model.has_neural else 0.0,
            "probabilities": {lab: float(p_boost[i, j]) for j, lab in enumerate(labels)},
            "neural_probabilities": ({lab: float(p_neural[i, j]) for j, lab in enumerate(labels)}
                                     if p_neural is not None else None),
            "class": labels[c], "base": float(row[-1]), "raw_score": float(row.sum()),
            "top_features": [{"feature": branch.feature_names_[j], "value": _finite(X[i, j]),
                              "contribution": float(row[j])} for j in order],
        })
    return out


def boosting_only_explanations(model, recs: Sequence[dict], top_features: int = TOP_FEATURES) -> list[dict]:
    """Explanations of a model.kind=boosting model: label, probabilities and the boosting part; the neural
    fields of `explain` are empty (None or [])."""
    probs = model.predict_proba(recs)
    pred = probs.argmax(1)
    parts = boosting_parts(model, recs, pred, top_features)
    return [{"product_id": r["product_id"], "cutoff": r.get("cutoff"), "label": model.labels[int(pred[i])],
             "probabilities": {lab: float(probs[i, j]) for j, lab in enumerate(model.labels)},
             "shapley": None, "gate": None, "sales_saliency": [], "period_ends": None, "top_periods": [],
             "top_words": [], "review": None, "ig_delta": None, "boosting": parts[i]} for i, r in enumerate(recs)]


def _finite(v: float) -> float | None:
    """A feature value for JSON: None where the record lacks it (NaN)."""
    return float(v) if np.isfinite(v) else None
