"""What happens between epochs and after the last one: validation with the per-class logit offsets and the
temperature fitted on it, export of the best model, early stopping, the test score; and the warm start of a new
run from an exported model.

All fits run on validation predictions gathered from every process, so each process fits the same values.
The exported model (out/model) carries the best epoch's weights, offsets and temperature; its model card and
metrics.json are written with it, and once more when the test metrics are known.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from trendnlp.config import TrainConfig, TrendConfig
from trendnlp.evaluation.metrics import classification_metrics
from trendnlp.evaluation.plots import plot_confusion_matrix, plot_reliability_diagram, plot_training_curves
from trendnlp.model.calibration import biased_scores, calibration_report, fit_logit_bias, fit_temperature, temper
from trendnlp.model.card import write_model_card
from trendnlp.model.classifier import TrendClassifier
from trendnlp.training.data import make_loader
from trendnlp.training.state import TrainerState, save_checkpoint, write_json


@torch.no_grad()
def predict_loader(model, loader: DataLoader, accelerator: Accelerator, desc: str = "eval", progress: bool = True):
    """Probabilities (n, C) and label indices (n,) of a prepared loader, gathered over processes."""
    model.eval()
    probs, labels = [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not (progress and accelerator.is_local_main_process)):
        y = batch.pop("labels")
        p, y = accelerator.gather_for_metrics((model(**batch)["logits"].float().softmax(-1), y))
        probs.append(p.cpu())
        labels.append(y.cpu())
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()


def _scores(labels: list, probs: np.ndarray, y: np.ndarray) -> dict:
    return classification_metrics(y, probs.argmax(1), labels)


def _calibrate(unwrapped, probs: np.ndarray, y: np.ndarray, val: dict, tc: TrainConfig) -> tuple[dict, dict]:
    """Fit the offsets (train.calibrate_bias) on the epoch's validation probabilities; (metrics, calibration)."""
    if not tc.calibrate_bias:
        return val, {}
    bias = fit_logit_bias(probs, y)
    unwrapped.logit_bias.copy_(torch.from_numpy(bias))
    return (_scores(unwrapped.labels, biased_scores(probs, bias), y),
            {"logit_bias": bias.tolist(), "uncalibrated_macro_f1": val["macro_f1"]})


def _temperature(probs: np.ndarray, y: np.ndarray, unwrapped, show: bool, accelerator: Accelerator) -> float:
    """The temperature of the model with its offsets, on validation (train.calibrate_temperature); `probs` are
    the epoch's validation probabilities (no offsets, the model's current temperature)."""
    z = biased_scores(temper(probs, 1.0 / float(unwrapped.temperature)), unwrapped.logit_bias.cpu().numpy())
    offset = np.exp(z - z.max(axis=1, keepdims=True))  # softmax(logits + offsets) at T = 1
    offset /= offset.sum(axis=1, keepdims=True)
    T = fit_temperature(offset, y)
    rep = calibration_report(temper(offset, T), y, T)
    if show:
        accelerator.print(f"temperature {T:.3f} (validation ECE {rep['ece_before']:.4f} -> {rep['ece_after']:.4f})")
    return T


def end_epoch(accelerator: Accelerator, model, val_loader, out: Path, state: TrainerState, tc: TrainConfig,
              show: bool) -> None:
    """Validate, record the epoch, export the model if it is the best so far, early-stop, checkpoint."""
    t0, n = time.perf_counter(), state.epoch + 1
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.logit_bias.zero_()  # score the model itself, then (optionally) fit this epoch's offsets
    probs, y = predict_loader(model, val_loader, accelerator, "validation", show)
    val, calibration = _calibrate(unwrapped, probs, y, _scores(unwrapped.labels, probs, y), tc)
    loss_sum, count = accelerator.reduce(torch.tensor([state.loss_sum, state.loss_count], dtype=torch.float64,
                                                      device=accelerator.device), "sum").tolist()
    row = {"epoch": n, "step": state.step, "train_loss": loss_sum / max(count, 1),
           "validation": val, "train_seconds": state.train_seconds,
           "seconds_per_step": state.train_seconds / max(state.loss_count, 1) * tc.gradient_accumulation_steps,
           "eval_seconds": time.perf_counter() - t0,
           "texts_per_record": state.texts / state.records if state.records else None, **calibration}
    state.history.append(row)
    accelerator.log({"val/macro_f1": val["macro_f1"], "val/accuracy": val["accuracy"],
                     "train/epoch_loss": row["train_loss"]}, step=state.step)
    calibrated = (f" (offsets {np.round(calibration['logit_bias'], 2).tolist()}; "
                  f"{calibration['uncalibrated_macro_f1']:.4f} without)" if calibration else "")
    accelerator.print(f"epoch {n}: train loss {row['train_loss']:.4f}, validation macro-F1 {val['macro_f1']:.4f}"
                      f"{calibrated}, accuracy {val['accuracy']:.4f} ({row['train_seconds']:.1f}s training)")
    if val["macro_f1"] > state.best_f1:
        state.best_f1, state.best_epoch, state.bad_epochs = val["macro_f1"], n, 0
        metrics = {"best_epoch": n, "step": state.step, "validation": val}
        if tc.calibrate_temperature:  # argmax-neutral: set in the exported model only
            row["temperature"] = metrics["temperature"] = _temperature(probs, y, unwrapped, show, accelerator)
        export(accelerator, model, out, metrics)
    else:
        state.bad_epochs += 1
        if tc.patience > 0 and state.bad_epochs >= tc.patience and not state.stopped:
            state.stopped = "early_stopping"
            accelerator.print(f"early stopping: no validation macro-F1 gain for {state.bad_epochs} epoch(s)")
    if accelerator.is_main_process:
        write_json(out / "metrics" / f"epoch_{n}.json", row)
        write_json(out / "metrics" / "history.json", state.history)
        plot_training_curves(state.history, out / "training_curves.png")
    state.new_epoch()
    save_checkpoint(accelerator, state)


def export(accelerator: Accelerator, model, out: Path, metrics: dict) -> None:
    """wait_for_everyone -> unwrap_model -> save_pretrained on the main process (with metrics.json and the card)."""
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        trained_T = float(unwrapped.temperature)
        if metrics.get("temperature") is not None:
            unwrapped.temperature.fill_(metrics["temperature"])
        unwrapped.save_pretrained(out / "model", metrics=metrics)
        unwrapped.temperature.fill_(trained_T)  # later epochs validate the model as trained
        plot_confusion_matrix(metrics["validation"], out / "confusion_matrix_validation.png",
                              f"validation, epoch {metrics['best_epoch']}")
    accelerator.wait_for_everyone()


def finish(accelerator: Accelerator, config: TrendConfig, out: Path, state: TrainerState, test_recs,
           show: bool) -> dict:
    """Score the exported best model on the test records (all processes share the work); the run summary."""
    best = next((h for h in state.history if h["epoch"] == state.best_epoch), None)
    result = {"best_epoch": state.best_epoch, "validation": best["validation"] if best else None, "test": None,
              "steps": state.step, "epochs": len(state.history), "stopped": state.stopped or "epochs",
              "model_dir": str(out / "model"), "history": state.history,
              "is_main_process": accelerator.is_main_process}  # callers print once
    if test_recs is None or best is None:
        return result
    clf = accelerator.prepare_model(TrendClassifier.from_pretrained(out / "model"), evaluation_mode=True)
    loader = accelerator.prepare_data_loader(make_loader(test_recs, clf.make_collator(),
                                                         config.train.eval_batch_size, config.train.seed))
    probs, y = predict_loader(clf, loader, accelerator, "test", show)
    result["test"] = test = _scores(clf.labels, probs, y)
    calib = calibration_report(probs, y, float(accelerator.unwrap_model(clf).temperature))
    test["calibration"] = summary = {k: v for k, v in calib.items() if not k.startswith("bins")}
    accelerator.print(f"test (best epoch {state.best_epoch}): macro-F1 {test['macro_f1']:.4f}, "
                      f"accuracy {test['accuracy']:.4f}, ECE {summary['ece_before']:.4f} -> {summary['ece_after']:.4f} "
                      f"(temperature {summary['temperature']:.3f})")
    if accelerator.is_main_process:
        write_json(out / "metrics" / "test.json", test)
        metrics = {"best_epoch": state.best_epoch, "step": best["step"], "validation": best["validation"],
                   **({"temperature": best["temperature"]} if "temperature" in best else {}), "test": test}
        write_json(out / "model" / "metrics.json", metrics)
        write_model_card(out / "model")  # now with the test metrics
        plot_confusion_matrix(test, out / "confusion_matrix_test.png", "test, best model")
        plot_reliability_diagram(calib, out / "reliability_test.png", "test, best model")
    return result


# configuration that only regularises training: it may differ between a model and its warm-started update
_TRAINING_ONLY = {("text", "lora_dropout"), ("text", "modality_dropout"), ("sales", "dropout"), ("fusion", "dropout")}


def warm_start(model: TrendClassifier, directory: str | Path) -> TrendClassifier:
    """Copy every weight of an exported model into a freshly built one with the same architecture.

    LoRA adapter (or fully fine-tuned encoder), sales encoder, fusion head, empty-text vector, logit offsets
    and the feature scaling statistics all come from `directory`; the scaling is kept, not refitted on the
    new data, so the update sees its inputs scaled as the model learned them. Only the training-only
    settings (dropouts) may differ between the two configs.

    Args:
        model: a new `TrendClassifier` built from the run's config.
        directory: a folder written by `save_pretrained` (e.g. runs/x/model).
    Returns:
        `model`, with the exported weights loaded.
    Raises:
        ValueError naming the config keys that differ, or the weights that do not match.

    >>> model = warm_start(TrendClassifier(config), "runs/last_month/model")  # doctest: +SKIP
    """
    source = TrendClassifier.from_pretrained(directory, merge_lora=False)
    if not source.has_neural:
        raise ValueError(f"--init-from {directory}: a model.kind=boosting folder has no network to warm-start from; "
                         "train without --init-from")
    old, new = source.config.to_dict(), model.config.to_dict()
    differ = [f"{sec}.{key} ({old[sec][key]!r} there, {value!r} here)" for sec in ("text", "sales", "fusion", "labels")
              for key, value in new[sec].items() if value != old[sec].get(key) and (sec, key) not in _TRAINING_ONLY]
    if differ:
        raise ValueError(f"--init-from {directory}: the config differs from the exported model's in "
                         f"{'; '.join(differ)}; use the model's own values (its config.json) or train from scratch")
    try:
        model.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError as e:
        raise ValueError(f"--init-from {directory}: its weights do not fit this model: {str(e)[:300]}") from None
    return model
