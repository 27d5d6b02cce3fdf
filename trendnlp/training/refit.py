"""train.refit: once validation has chosen the epochs, the boosting rounds and the blend, train the branches again
with those settings on every labelled record known before test (train + data.refit_extra + validation) and export
that model instead.

    out/model_selection/   the model of the selection run (its offsets, temperature and blend are kept)
    out/refit/             the neural branch's refit run (training.train's folder: best_epoch epochs, the last kept)
    out/model/             the refit model: refit neural weights and booster, the selection run's calibration and
                           blend weight; config.json["refit"] says it was refit and on how many records
Validation is inside the refit's training data, so nothing is fitted on it any more: the offsets, temperature
and weight are the selection run's, unchanged.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from trendnlp.config import TrendConfig

SELECTION_DIR, REFIT_DIR = "model_selection", "refit"


def refit_records(config: TrendConfig, train: list[dict], validation: list[dict]) -> list[dict]:
    """train + data.refit_extra + validation (validated, labelled)."""
    extra = []
    if config.data.refit_extra:
        from trendnlp.data.record_files.records import first_unlabelled, read_records, require_labels

        extra = read_records(config.data.refit_extra, on_error=config.data.on_error, history=config.sales.history,
                             rule=config.labels.rule())
        if extra:  # an empty gap is no error
            require_labels(f"data.refit_extra ({config.data.refit_extra})", len(extra), first_unlabelled(extra),
                           "refit needs labelled records")
    return [*train, *extra, *validation]


def _neural_config(config: TrendConfig, epochs: int) -> TrendConfig:
    raw = config.to_dict()
    raw["model"]["kind"] = "neural"
    raw["train"].update(refit=False, epochs=max(1, int(epochs)), patience=0, calibrate_bias=False,
                        calibrate_temperature=False, max_steps=0)
    raw["data"].update(test="")
    return TrendConfig.from_dict(raw)


def refit(train_fn: Callable, config: TrendConfig, out: Path, splits: tuple, result: dict,
          progress: bool = True) -> dict:
    """Retrain with the selection run's choices on train + refit_extra + validation; export to out/model.

    Args:
        train_fn: `training.train` (passed in: this module sits below the loop that calls it).
        config: the run's config (train.refit true).
        out: the run folder; out/model holds the selection run's model.
        splits: (train, validation, test) validated records of the selection run (test may be None).
        result: the selection run's result dict.
        progress: show progress.
    Returns:
        the result dict of the refit model (test scored with it), with "refit": {records, epochs, rounds,
        selection_test} and the selection run's validation scores.
    """
    from trendnlp.model.classifier import TrendClassifier
    from trendnlp.training.hybrid import finish_folder

    train, validation, test = splits
    records = refit_records(config, train, validation)
    selection = out / SELECTION_DIR
    if selection.exists():
        shutil.rmtree(selection)
    shutil.copytree(out / "model", selection)
    chosen = TrendClassifier.from_pretrained(selection, merge_lora=False)
    info = {"records": len(records), "extra_records": len(records) - len(train) - len(validation),
            "epochs": result.get("best_epoch"), "rounds": None}
    if progress:
        print(f"refit: {len(records)} records (train {len(train)} + extra {info['extra_records']} + validation "
              f"{len(validation)})", flush=True)
    if chosen.has_neural:
        train_fn(_neural_config(config, result["best_epoch"]), out / REFIT_DIR, progress=progress,
                 splits=(records, validation, None), export_last=True)
        shutil.rmtree(out / REFIT_DIR / "checkpoints", ignore_errors=True)  # a refit is rerun, never resumed
        model = TrendClassifier.from_pretrained(out / REFIT_DIR / "model", merge_lora=False)
        model.logit_bias.copy_(chosen.logit_bias)  # the selection run's neural calibration
        model.temperature.copy_(chosen.temperature)
    else:
        model = chosen
    if chosen.blend is not None:
        model.blend = chosen.blend
        model.blend.branch.refit(records)
        info["rounds"] = model.blend.branch.params_["rounds"]
    model.save_pretrained(out / "model", metrics={})
    meta_path = out / "model" / "config.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["refit"] = info
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    refit_result = finish_folder(config, out, validation, test, result, model.blend, progress, refit=info)
    refit_result["refit"] = {**info, "selection_test": result.get("test"),
                             "selection_validation": result.get("validation")}
    return refit_result
