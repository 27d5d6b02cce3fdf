"""The hybrid model (model.kind: hybrid | boosting): the boosting branch and how it is blended, saved in the folder.

    p_blend = w * p_neural + (1 - w) * p_boosting        (probabilities; w = 0 for model.kind=boosting)
    p       = softmax((log p_blend + offsets) / T)        (the offsets and T fitted on validation, on the blend)
p_neural is the neural branch exactly as it predicts alone (its own offsets and temperature), p_boosting the
booster's raw probabilities. `choose_blend` picks w on a grid by validation macro-F1 (each w with its own
offsets when train.calibrate_bias, as the benchmark's ensemble row did), then T by validation log-loss.

The folder: boosting/ (model/boosting.py: model.txt in LightGBM's text format, boosting.json, pca.safetensors)
and config.json["hybrid"] = {kind, blend_weight, logit_bias, temperature, validation scores of each branch}.
The prediction core (model/predict.py) reads `runtime.blend`; every runtime (torch, ONNX, a boosting-only one)
carries the same `Blend`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trendnlp.model.boosting import BoostingBranch
from trendnlp.model.calibration import biased_scores, fit_logit_bias, fit_temperature, macro_f1_from_predictions
from trendnlp.model.predict import Runtime

BOOSTING_DIR = "boosting"
BRANCHES = ("neural", "boosting")


def calibrated(probs: np.ndarray, bias: np.ndarray | None, temperature: float) -> np.ndarray:
    """softmax((log probs + bias) / T) as float32 (rows of NaN stay NaN).

    >>> calibrated(np.array([[0.5, 0.5]]), np.array([0.0, np.log(3.0)]), 1.0).round(2).tolist()
    [[0.25, 0.75]]
    """
    z = biased_scores(np.asarray(probs, dtype=np.float64), 0.0 if bias is None else np.asarray(bias)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass
class Blend:
    """The boosting branch and the blend of a hybrid (or boosting-only) model folder."""

    branch: BoostingBranch
    kind: str = "hybrid"  # "hybrid" or "boosting"
    weight: float = 0.5  # w of the neural branch
    logit_bias: list[float] | None = None  # offsets on log p_blend (None: none)
    temperature: float = 1.0
    scores: dict = field(default_factory=dict)  # validation macro-F1 of the blend and of each branch alone

    def combine(self, p_neural: np.ndarray | None, p_boosting: np.ndarray) -> np.ndarray:
        """The saved model's probabilities from each branch's (p_neural None for a boosting-only model)."""
        p = p_boosting if p_neural is None else self.weight * p_neural + (1.0 - self.weight) * p_boosting
        return calibrated(p, None if self.logit_bias is None else np.asarray(self.logit_bias), self.temperature)

    def meta(self) -> dict:
        """config.json["hybrid"]."""
        return {"kind": self.kind, "blend_weight": self.weight, "logit_bias": self.logit_bias,
                "temperature": self.temperature, "validation_macro_f1": self.scores,
                "boosting": {"params": self.branch.params_, "text": self.branch.text,
                             "features": len(self.branch.feature_names_)}}

    def save(self, folder: Path) -> list[str]:
        """Write boosting/ into a model folder; the relative paths written."""
        self.branch.save(folder / BOOSTING_DIR)
        return sorted(str(p.relative_to(folder)) for p in (folder / BOOSTING_DIR).iterdir())


def load_blend(folder: Path, meta: dict, base_model: str | None) -> Blend | None:
    """The folder's Blend, or None for a neural model (no "hybrid" key: also every folder of earlier releases)."""
    h = meta.get("hybrid")
    if not h:
        return None
    from trendnlp.errors import ModelFolderError

    if not isinstance(h, dict) or h.get("kind") not in ("hybrid", "boosting"):
        raise ModelFolderError(f"{folder / 'config.json'}: key 'hybrid' must be an object with kind hybrid or "
                               f"boosting, found {h!r}; the folder is damaged: train the model again")
    branch = BoostingBranch.load(folder / BOOSTING_DIR, base_model=base_model)
    return Blend(branch, h["kind"], float(h.get("blend_weight", 0.0)), h.get("logit_bias"),
                 float(h.get("temperature", 1.0)), h.get("validation_macro_f1") or {})


def choose_blend(p_neural: np.ndarray | None, p_boosting: np.ndarray, y: np.ndarray, n_weights: int = 11,
                 calibrate_bias: bool = True, calibrate_temperature: bool = True) -> dict:
    """The blend weight, offsets and temperature with the best validation scores.

    Args:
        p_neural: (n, C) validation probabilities of the neural branch (None: a boosting-only model, w = 0).
        p_boosting: (n, C) validation probabilities of the boosting branch.
        y: (n,) true class indices.
        n_weights: weights tried, evenly from 0 to 1 (ties: the smaller weight).
        calibrate_bias: fit per-class offsets on the blend for each weight (max macro-F1).
        calibrate_temperature: fit T on the chosen blend with its offsets (min log-loss).
    Returns:
        {"weight", "logit_bias" (list or None), "temperature", "macro_f1" (the blend's, with offsets)}.

    >>> p_n = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]); p_b = np.array([[0.6, 0.4], [0.4, 0.6], [0.3, 0.7]])
    >>> choose_blend(p_n, p_b, np.array([0, 1, 1]), calibrate_bias=False, calibrate_temperature=False)["weight"]
    0.0
    """
    C = p_boosting.shape[1]
    weights = [0.0] if p_neural is None else np.round(np.linspace(0.0, 1.0, n_weights), 4).tolist()
    best = (-1.0, 0.0, np.zeros(C))
    for w in weights:
        p = p_boosting if p_neural is None else w * p_neural + (1 - w) * p_boosting
        bias = fit_logit_bias(p, y) if calibrate_bias else np.zeros(C, dtype=np.float32)
        score = macro_f1_from_predictions(y, biased_scores(p, bias).argmax(1), C)
        if score > best[0] + 1e-12:
            best = (score, w, bias)
    score, w, bias = best
    T = 1.0
    if calibrate_temperature:
        p = p_boosting if p_neural is None else w * p_neural + (1 - w) * p_boosting
        T = fit_temperature(calibrated(p, bias, 1.0), y)
    return {"weight": float(w), "logit_bias": [float(b) for b in bias] if calibrate_bias else None,
            "temperature": float(T), "macro_f1": float(score)}


class BoostingTrendClassifier(Runtime):
    """A model.kind=boosting folder as a runtime: the boosting branch with its validation offsets and temperature;
    `predict` / `predict_proba` / `labels` as every runtime (model/predict.py)."""

    has_neural = False
    tokenizer = None

    def __init__(self, config, blend: Blend):
        import torch

        self.config, self.blend, self.device = config, blend, torch.device("cpu")

    def eval(self) -> "BoostingTrendClassifier":
        return self

    def save_pretrained(self, directory: str | Path, metrics: dict | None = None, **_: Any) -> None:
        """Write the folder: config.json, boosting/, metrics.json and the card."""
        save_boosting_folder(self, directory, metrics)

    def explain(self, records: Any, **_: Any) -> list[dict]:
        """One explanation per record: label, probabilities and LightGBM's tree SHAP values (the neural
        fields of `TrendClassifier.explain` are empty); keyword options of the neural explainer are ignored."""
        from trendnlp.model.explain import explain

        return explain(self, records)


def save_boosting_folder(runtime, directory: str | Path, metrics: dict | None = None) -> None:
    """A model.kind=boosting folder: config.json, boosting/, metrics.json and the card (no neural files)."""
    from trendnlp.data.record_files.io import write_json
    from trendnlp.model.card import write_model_card
    from trendnlp.model.folder import CONFIG_NAME, atomic_folder, library_versions

    c = runtime.config
    with atomic_folder(directory) as d:
        files = runtime.blend.save(d)
        meta = {"format": "trendnlp", "format_version": 1, "config": c.to_dict(), "labels": runtime.labels,
                "label_rule": dataclasses.asdict(c.labels.rule()), "base_model": c.text.base_model,
                "versions": library_versions("trendnlp", "lightgbm", "numpy"), "hybrid": runtime.blend.meta(), "files": [CONFIG_NAME, *files]}
        (d / CONFIG_NAME).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if metrics is not None:
            write_json(d / "metrics.json", metrics)
        write_model_card(d)
