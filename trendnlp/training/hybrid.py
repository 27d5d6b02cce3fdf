"""The boosting branch in `train` (model.kind hybrid or boosting): fit it on the run's train records (validation for
early stopping), choose the blend on validation, export one folder, score test; and train.refit.

    hybrid     the neural branch as `train` always trained it (out/model, its own offsets and temperature), then
               the boosting branch on the same train records; the blend weight w, the offsets and the temperature
               on validation (model/hybrid.py: choose_blend); out/model rewritten with boosting/ and the blend
    boosting   the boosting branch alone (no neural training): offsets and temperature on validation
Every choice is made on validation; test is only scored (the blend, and each branch alone).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from trendnlp.config import TrendConfig
from trendnlp.evaluation.metrics import classification_metrics
from trendnlp.model.boosting import BoostingBranch
from trendnlp.model.hybrid import Blend, BoostingTrendClassifier, choose_blend
from trendnlp.training.state import write_json


def make_branch(config: TrendConfig) -> BoostingBranch:
    """An unfitted boosting branch with the config's settings (model.boosting_*)."""
    m = config.model
    grid = [dict(num_leaves=n, min_data_in_leaf=m.boosting_min_data_in_leaf, learning_rate=0.05)
            for n in m.boosting_leaves]
    return BoostingBranch(config.labels.rule(), config.labels.names, history=config.sales.history,
                          text=m.boosting_text, base_model=config.text.base_model, seed=config.train.seed,
                          grid=grid, max_rounds=m.boosting_max_rounds, early_stopping=m.boosting_early_stopping)


def _y(config: TrendConfig, records: list[dict]) -> np.ndarray:
    return np.array([config.labels.names.index(r["label"]) for r in records], dtype=np.int64)


def _metrics(config: TrendConfig, records: list[dict], probs: np.ndarray) -> dict:
    names = config.labels.names
    return classification_metrics([r["label"] for r in records], [names[i] for i in probs.argmax(1)], names)


def _say(show: bool, text: str) -> None:
    if show:
        print(text, flush=True)


def fit_blend(config: TrendConfig, branch: BoostingBranch, val: list[dict], p_neural: np.ndarray | None,
              kind: str) -> Blend:
    """The Blend chosen on validation (model/hybrid.py: choose_blend), with each part's validation macro-F1."""
    tc = config.train
    p_boost = branch.predict_proba(val)
    choice = choose_blend(p_neural, p_boost, _y(config, val), config.model.blend_weights, tc.calibrate_bias,
                          tc.calibrate_temperature)
    scores = {"boosting": float(_metrics(config, val, p_boost)["macro_f1"]), "blend": choice["macro_f1"]}
    if p_neural is not None:
        scores["neural"] = float(_metrics(config, val, p_neural)["macro_f1"])
    return Blend(branch, kind, choice["weight"] if p_neural is not None else 0.0, choice["logit_bias"],
                 choice["temperature"], scores)


def _branch_results(config: TrendConfig, clf, parts: dict[str, list[dict] | None]) -> dict:
    """Each branch alone on validation and test: {"neural": {"validation", "test"}, "boosting": {...}}."""
    out = {}
    for b in ("neural", "boosting"):
        if b == "neural" and not clf.has_neural:
            continue
        out[b] = {k: (_metrics(config, recs, clf.predict_proba(recs, branch=b, batch_size=config.train.eval_batch_size))
                      if recs else None) for k, recs in parts.items()}
    return out


def add_boosting(config: TrendConfig, out: Path, train_recs: list[dict], val_recs: list[dict],
                 test_recs: list[dict] | None, result: dict, show: bool = True) -> dict:
    """model.kind=hybrid after the neural training: fit the boosting branch, choose the blend, rewrite out/model
    as the hybrid folder, score test with the blend and each branch alone. Returns `result` updated."""
    from trendnlp.model.classifier import TrendClassifier

    t0 = time.perf_counter()
    model_dir = out / "model"
    _say(show, f"boosting branch: LightGBM on {len(train_recs)} train records ...")
    branch = make_branch(config).fit(train_recs, val_recs)
    neural = TrendClassifier.from_pretrained(model_dir, merge_lora=False)  # un-merged: it is saved again
    p_neural = neural.predict_proba(val_recs, batch_size=config.train.eval_batch_size)
    blend = fit_blend(config, branch, val_recs, p_neural, "hybrid")
    neural.blend = blend
    metrics = _read_metrics(model_dir)
    neural.save_pretrained(model_dir, metrics=metrics)  # the hybrid folder (metrics rewritten below)
    _say(show, f"hybrid: blend weight {blend.weight:.1f} (neural), validation macro-F1 blend "
               f"{blend.scores['blend']:.4f}, neural {blend.scores['neural']:.4f}, boosting "
               f"{blend.scores['boosting']:.4f} ({time.perf_counter() - t0:.1f}s)")
    return finish_folder(config, out, val_recs, test_recs, result, blend, show)


def train_boosting(config: TrendConfig, output_dir: str | Path, splits: tuple, progress: bool = True) -> dict:
    """model.kind=boosting: the boosting branch alone, exported to output_dir/model.

    Args:
        config: the run's config.
        output_dir: the run folder.
        splits: (train, validation, test) validated records (test may be None).
        progress: print what happens.
    Returns:
        the dict of `train` (best_epoch None, history []), with branches and blend_weight 0.
    """
    out = Path(output_dir)
    train_recs, val_recs, test_recs = splits
    _say(progress, f"boosting: LightGBM on {len(train_recs)} train / {len(val_recs)} validation records ...")
    branch = make_branch(config).fit(train_recs, val_recs)
    blend = fit_blend(config, branch, val_recs, None, "boosting")
    BoostingTrendClassifier(config, blend).save_pretrained(out / "model", metrics={})
    result = {"best_epoch": None, "validation": None, "test": None, "steps": 0, "epochs": 0, "stopped": "epochs",
              "model_dir": str(out / "model"), "history": [], "is_main_process": True}
    return finish_folder(config, out, val_recs, test_recs, result, blend, progress)


def finish_folder(config: TrendConfig, out: Path, val_recs: list[dict], test_recs: list[dict] | None,
                  result: dict, blend: Blend | None, show: bool, refit: dict | None = None) -> dict:
    """Score the exported folder (the saved model and each branch alone) on validation and test; write
    metrics.json and the card; the result dict. A refit model trained on validation: its validation scores are
    the selection run's (`result`), only test is scored again."""
    from trendnlp.model.card import write_model_card
    from trendnlp.model.classifier import TrendClassifier

    model_dir = out / "model"
    clf = TrendClassifier.from_pretrained(model_dir)
    bs = config.train.eval_batch_size
    val = result["validation"] if refit else _metrics(config, val_recs, clf.predict_proba(val_recs, batch_size=bs))
    test = _metrics(config, test_recs, clf.predict_proba(test_recs, batch_size=bs)) if test_recs else None
    branches = _branch_results(config, clf, {"test": test_recs} if refit else
                               {"validation": val_recs, "test": test_recs})
    for b, scores in branches.items():
        if refit:  # validation scores of the selection run, as chosen
            scores["validation"] = (result.get("branches") or {}).get(b, {}).get("validation")
    weight = blend.weight if blend is not None else 1.0
    metrics = {**_read_metrics(model_dir), "kind": clf.kind, "blend_weight": weight, "validation": val,
               "test": test, "branches": branches, **({"refit": refit, "best_epoch": result.get("best_epoch")}
                                                       if refit else {})}
    if result.get("validation") is not None and not refit and blend is not None and clf.has_neural:
        metrics["neural_validation"] = result["validation"]
    write_json(model_dir / "metrics.json", metrics)
    write_model_card(model_dir)
    if test is not None:
        write_json(out / "metrics" / "test.json", test)
        _say(show, f"test ({clf.kind}{', refit' if refit else ''}): macro-F1 {test['macro_f1']:.4f}, accuracy "
                   f"{test['accuracy']:.4f}; " + ", ".join(f"{b} alone {r['test']['macro_f1']:.4f}"
                                                          for b, r in branches.items()))
    return {**result, "validation": val, "test": test, "branches": branches, "blend_weight": weight,
            "kind": clf.kind}


def _read_metrics(model_dir: Path) -> dict:
    import json

    path = model_dir / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
