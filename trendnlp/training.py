"""The Accelerate training loop: weighted or focal loss, evaluation per epoch, early stopping on validation
macro-F1, resumable checkpoints, export of the best model; and `evaluate` for a saved model.

The loop is accelerate's examples/complete_nlp_example.py: set_seed -> build -> prepare -> accumulate /
backward -> clip under sync_gradients -> gather_for_metrics; save_state / load_state + skip_first_batches
to resume; wait_for_everyone -> unwrap_model -> save_pretrained on the main process to export.

The output folder of `train`:
    config.yaml                 the resolved config
    errors.csv                  rows skipped under data.on_error=skip
    metrics/epoch_{n}.json      train loss, validation metrics and timings of epoch n (1-based); history.json
    metrics/test.json           the best model on data.test (when set)
    model/                      the best model (TrendClassifier.save_pretrained) plus metrics.json
    checkpoints/step_{N}/       accelerate state + trainer_state.json (the last two are kept)
    training_curves.png, confusion_matrix_{validation,test}.png, logs/ (tensorboard)
"""
from __future__ import annotations

import json
import math
import pickle
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import ProjectConfiguration, is_tensorboard_available, set_seed
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from trendnlp.model.calibration import (biased_scores, calibration_report, coverage_accuracy, fit_logit_bias,
                                        fit_temperature, temper)
from trendnlp.model.card import write_model_card
from trendnlp.config import TrainConfig, TrendConfig
from trendnlp.data.collate import ProductGroupedSampler
from trendnlp.evaluation.metrics import classification_metrics
from trendnlp.model.classifier import TrendClassifier
from trendnlp.evaluation.plots import plot_confusion_matrix, plot_reliability_diagram, plot_training_curves
from trendnlp.data.records import ErrorReport, read_records
from trendnlp.data.fingerprint import fingerprint_diff, flatten, run_fingerprint
from trendnlp.errors import ResumeError, exclusive_output, rank_tag

STATE_FILE = "trainer_state.json"  # written last into a checkpoint folder: its presence marks the save complete
KEEP_CHECKPOINTS = 2


# ---- loss ----------------------------------------------------------------------------------------
def class_weights(labels: Sequence[str], names: Sequence[str]) -> torch.Tensor:
    """Inverse-frequency class weights from the training labels, normalised to mean 1 over classes.

    Args:
        labels: the training labels.
        names: class order of the returned tensor.
    Returns:
        float tensor (len(names),); a class absent from `labels` gets weight 1.

    >>> class_weights(["rising", "rising", "falling", "stable"], ["rising", "falling", "stable"]).tolist()
    [0.6000000238418579, 1.2000000476837158, 1.2000000476837158]
    """
    if isinstance(labels, dict):  # already counted ({label: count}, e.g. from an Arrow build)
        counts = np.array([labels.get(n, 0) for n in names], dtype=float)
    else:
        counts = np.array([sum(1 for lab in labels if lab == n) for n in names], dtype=float)
    inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), np.nan)
    inv = inv / np.nanmean(inv) if np.isfinite(inv).any() else np.ones(len(names))
    return torch.tensor(np.nan_to_num(inv, nan=1.0), dtype=torch.float32)


def loss_function(cfg: TrainConfig, weights: torch.Tensor | None) -> Callable:
    """Cross-entropy (cfg.loss="ce") or focal loss (cfg.loss="focal", cfg.focal_gamma), optionally class-weighted.

    Returns:
        loss(logits (B, C), target (B,)) -> scalar, the weighted mean sum(w_i * l_i) / sum(w_i) as in torch's
        weighted cross-entropy.
    """
    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp_t = F.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)  # fp32 under bf16 too
        w = weights.to(logits.device)[target] if weights is not None else torch.ones_like(logp_t)
        per = -logp_t if cfg.loss == "ce" else -((1 - logp_t.exp()) ** cfg.focal_gamma) * logp_t
        return (w * per).sum() / w.sum()
    return loss


# ---- sampling and resumable state ----------------------------------------------------------------
class EpochShuffleSampler(Sampler[int]):
    """A seeded shuffle whose order depends only on (seed, epoch), so a resumed run sees the same batches."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        return (int(i) for i in perm)  # lazily: a list of millions of Python ints would dwarf the tensor


@dataclass
class TrainerState:
    """Counters and early-stopping state, saved as trainer_state.json beside the accelerate state."""

    epoch: int = 0  # 0-based epoch in progress
    batches_done: int = 0  # batches of that epoch already trained (a mid-epoch resume skips them)
    step: int = 0  # optimizer steps so far
    loss_sum: float = 0.0  # running train loss of the epoch in progress
    loss_count: int = 0
    texts: int = 0  # distinct texts encoded and records seen in this epoch (dedup statistics)
    records: int = 0
    train_seconds: float = 0.0
    best_f1: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: str = ""  # why training ended before the last epoch: "early_stopping" or "max_steps"
    history: list = field(default_factory=list)
    fingerprint: dict = field(default_factory=dict)  # config + data digests of the run (data.fingerprint)

    def new_epoch(self) -> None:
        self.epoch, self.batches_done = self.epoch + 1, 0
        self.loss_sum, self.loss_count, self.texts, self.records, self.train_seconds = 0.0, 0, 0, 0, 0.0


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder under output_dir/checkpoints (None when there is none)."""
    done = [p for p in (Path(output_dir) / "checkpoints").glob("step_*") if (p / STATE_FILE).exists()]
    return max(done, key=lambda p: int(p.name.split("_")[1]), default=None)


def _checkpoint(accelerator: Accelerator, out: Path, state: TrainerState) -> None:
    """save_state to checkpoints/step_N, then the trainer state (marks it complete); keep the last two."""
    path = out / "checkpoints" / f"step_{state.step}"
    if accelerator.is_main_process and (path / STATE_FILE).exists():
        (path / STATE_FILE).unlink()  # an epoch end right after a step save rewrites the same folder
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path))  # model as safetensors; optimizer, scheduler and RNG states via torch.save
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_json(path / STATE_FILE, asdict(state))
        done = sorted((p for p in path.parent.glob("step_*") if (p / STATE_FILE).exists()),
                      key=lambda p: int(p.name.split("_")[1]))
        for old in done[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def refused_pickle(ckpt: Path) -> Path:
    """The first file of a checkpoint that torch's safe loader (weights_only) refuses; the folder if none is."""
    for f in sorted(p for p in ckpt.rglob("*") if p.is_file() and p.suffix in (".bin", ".pkl", ".pt", ".pth")):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*pickle protocol.*")
                torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            return f
        except Exception:  # noqa: BLE001 - unreadable for another reason: not the file looked for
            continue
    return ckpt


def check_resumable(ckpt: Path, fingerprint: dict, anyway: bool) -> None:
    """Refuse to resume a checkpoint written with another config or other data files, unless `anyway`."""
    try:
        saved = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8")).get("fingerprint") or {}
    except (OSError, ValueError) as e:
        raise ResumeError(f"{ckpt / STATE_FILE}: unreadable ({e}); train without --resume") from None
    diffs = fingerprint_diff(saved, fingerprint) if saved else []
    if diffs and not anyway:
        raise ResumeError(f"{ckpt}: cannot resume, this run differs from the checkpoint's: {'; '.join(diffs[:6])}"
                          f"{' ...' if len(diffs) > 6 else ''}. Restore the old config/data, train without --resume, "
                          "or pass --resume-anyway to continue with the new settings")
    if diffs:
        warnings.warn(f"resuming {ckpt} with changed settings: {'; '.join(diffs[:6])}", UserWarning, stacklevel=3)


def apply_new_hyperparameters(optimizer, scheduler, model, tc: TrainConfig) -> None:
    """After load_state: the restored optimizer and scheduler carry the checkpoint's learning rates; put this
    run's lr / encoder_lr / weight_decay in their place, at the scheduler's current position."""
    unwrapped = getattr(model, "module", model)  # DDP wraps the model
    new = {g["name"]: g for g in unwrapped.param_groups(tc.lr, tc.encoder_lr, tc.weight_decay)}
    sched = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps the torch scheduler
    for i, group in enumerate(optimizer.param_groups):  # same groups, same order as built (names restored)
        g = new[group["name"]]
        group["initial_lr"], group["weight_decay"] = g["lr"], g["weight_decay"]
        sched.base_lrs[i] = g["lr"]
        group["lr"] = g["lr"] * sched.lr_lambdas[i](sched.last_epoch)
    sched._last_lr = [group["lr"] for group in optimizer.param_groups]


def warn_on_class_coverage(train_recs: list, val_recs: list, names: Sequence[str]) -> None:
    """Warn when training sees a single class, or validation lacks a class training has (its F1 is then 0)."""
    seen = {r["label"] for r in train_recs}
    if len(seen) < 2:
        warnings.warn(f"training records hold a single class ({sorted(seen)}); the model cannot learn to tell "
                      "trends apart. Check the label rule (labels.tau) or the data", UserWarning, stacklevel=3)
    absent = [n for n in names if n in seen and n not in {r["label"] for r in val_recs}]
    if absent:
        warnings.warn(f"validation records hold no {absent} record(s): macro-F1 counts those classes as 0 and "
                      "early stopping is noisier; use a larger or later validation window", UserWarning,
                      stacklevel=3)


# ---- data and accelerator ------------------------------------------------------------------------
def load_splits(config: TrendConfig, errors_path: Path | None = None) -> tuple[list, list, list | None]:
    """Validated, labelled train, validation and (optional) test records of config.data.

    An empty data.validation holds out the latest cutoffs of train (trendnlp.data.split.time_holdout).
    Rows skipped under data.on_error=skip are written to `errors_path`.
    """
    d = config.data
    if not d.train:
        raise ValueError("config: data.train is empty; set it to a records file, e.g. --set data.train=train.jsonl")
    report = ErrorReport()
    kw = dict(on_error=d.on_error, history=config.sales.history, rule=config.labels.rule(), report=report)
    train = read_records(d.train, **kw)
    if d.validation:
        val = read_records(d.validation, **kw)
    else:
        from trendnlp.data.split import time_holdout

        train, val = time_holdout(train, d.val_fraction, config.labels.F)
    test = read_records(d.test, **kw) if d.test else None
    if errors_path is not None and (len(report) or d.on_error == "skip"):
        report.write(errors_path)
    for name, recs in (("train", train), ("validation", val), ("test", test)):
        bad = next((r for r in recs or [] if r["label"] is None), None)
        if recs is not None and (not recs or bad):
            raise ValueError(f"{name} records ({getattr(d, name) or d.train}): " + (
                f"product_id={bad['product_id']!r} cutoff={bad['cutoff']} has neither `label` nor `future_sales`"
                if bad else "none left") + "; training and evaluation need labelled records")
    return train, val, test


def _loader(records: list, collate, batch_size: int, seed: int, sampler: Sampler | None = None, workers: int = 0):
    # an own generator: the iterator draws its base seed from it instead of torch's global RNG, which keeps
    # dropout identical between an uninterrupted and a resumed run
    return DataLoader(records, batch_size=batch_size, sampler=sampler, collate_fn=collate, num_workers=workers,
                      generator=torch.Generator().manual_seed(seed))


def make_accelerator(cfg: TrainConfig, output_dir: Path) -> Accelerator:
    """An Accelerator for cfg: CPU (gloo between processes) when no CUDA device exists, precision, trackers."""
    cpu = not torch.cuda.is_available()
    if cfg.mixed_precision == "fp16" and cpu:
        raise ValueError("train.mixed_precision=fp16 needs a CUDA GPU (fp16 autocast with loss scaling is not "
                         "supported on CPU); use --set train.mixed_precision=bf16 or no")
    if cfg.log_with not in ("auto", "none", "tensorboard"):
        raise ValueError(f"config: train.log_with must be auto, none or tensorboard, found {cfg.log_with!r}")
    if cfg.log_with == "tensorboard" and not is_tensorboard_available():
        raise ValueError("train.log_with=tensorboard but tensorboard is not installed: pip install tensorboard, "
                         "or --set train.log_with=none")
    # the state is a process-wide singleton; runs in one process (tests, benchmarks) may differ in precision
    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(
        cpu=cpu, mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with="tensorboard" if cfg.log_with != "none" and is_tensorboard_available() else None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # the empty-text embedding gets no gradient in batches where every record has text
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


@torch.no_grad()
def predict_loader(model, loader, accelerator: Accelerator, desc: str = "eval", progress: bool = True):
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


# ---- training ------------------------------------------------------------------------------------
@exclusive_output(lambda a: (a["output_dir"], "--output-dir", rank_tag()))  # one run per folder (its checkpoints)
def train(config: TrendConfig, output_dir: str | Path, resume: bool = False, progress: bool = True,
          on_step: Callable[[int, Any, Accelerator], None] | None = None, resume_anyway: bool = False,
          init_from: str | Path | None = None) -> dict:
    """Fine-tune a TrendClassifier on config.data; export the best epoch (validation macro-F1) to output_dir/model.

    Args:
        config: the full config; the run follows config.train and reads config.data.
        output_dir: run folder (layout in the module docstring); created when missing.
        resume: continue from the newest checkpoint in output_dir/checkpoints with the same batches and RNG
            states as an uninterrupted run.
        progress: show progress bars and summaries (main process only).
        on_step: called on every process after each optimizer step (and its checkpoint) with
            (step, model, accelerator); an exception raised there interrupts the run, `resume=True` continues it.
        resume_anyway: resume even when the config or the data files differ from the checkpoint's (otherwise a
            ResumeError lists the differences); the new learning rates and weight decay then apply from here on.
        init_from: an exported model folder to warm-start from (`warm_start`): every weight, the logit offsets
            and the feature scaling come from it instead of a fresh initialisation and a refit on the new data.
    Returns:
        dict with best_epoch, validation (the best epoch's metrics), test (or None), steps, epochs,
        stopped ("epochs", "early_stopping" or "max_steps"), model_dir, history and is_main_process.

    >>> cfg = TrendConfig.from_yaml("configs/default.yaml")  # doctest: +SKIP
    >>> train(cfg, "runs/default")["validation"]["macro_f1"]  # doctest: +SKIP
    """
    out, tc = Path(output_dir), config.train
    accelerator = make_accelerator(tc, out)  # refuses fp16 on CPU before any heavy work
    main, show = accelerator.is_main_process, progress and accelerator.is_local_main_process
    ckpt = latest_checkpoint(out) if resume else None
    if resume and ckpt is None:
        raise FileNotFoundError(f"resume=True but {out / 'checkpoints'} holds no complete checkpoint; "
                                "run without --resume")
    fingerprint = run_fingerprint(config)
    if ckpt is not None:
        check_resumable(ckpt, fingerprint, resume_anyway)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        for old in ("checkpoints", "metrics"):  # a later --resume must never pick up an older run's state
            if not resume and (out / old).exists():
                shutil.rmtree(out / old)
        config.save_yaml(out / "config.yaml")
    accelerator.wait_for_everyone()
    arrow = None
    if config.data.arrow:
        from trendnlp.data.arrow import GroupedIndexSampler, load_arrow_splits, scaling_rows, tokenize_texts

        with accelerator.main_process_first():  # the main process builds the Arrow cache; the others reuse it
            train_recs, val_recs, test_recs, arrow = load_arrow_splits(config, out / "data_cache",
                                                                       out / "errors.csv" if main else None)
    else:
        train_recs, val_recs, test_recs = load_splits(config, out / "errors.csv" if main else None)
        if main:
            warn_on_class_coverage(train_recs, val_recs, config.labels.names)

    set_seed(tc.seed)
    model = TrendClassifier(config)
    if init_from:  # scaling and every weight from the exported model, not refitted on the new data
        model = warm_start(model, init_from)
    elif arrow is None:
        model.fit_feature_scaling(train_recs)
    elif model.sales_encoder is not None:  # scaling from the one build pass, not from records held in memory
        model.sales_encoder.fit_summary_scaler(scaling_rows(arrow))
    chunk = max(1, tc.batch_size // 4)
    if not tc.group_by_product:
        sampler = EpochShuffleSampler(len(train_recs), seed=tc.seed)
    elif arrow is None:
        sampler = ProductGroupedSampler([r["product_id"] for r in train_recs], seed=tc.seed, chunk=chunk)
    else:  # product codes from the Arrow column, not a list of ids
        sampler = GroupedIndexSampler(train_recs.column("product_code"), seed=tc.seed, chunk=chunk)
    if arrow is None:
        train_collate = val_collate = model.make_collator(dedup=tc.dedup_text)
    else:  # each split's distinct texts tokenized once, by Dataset.map, in the main process first
        with accelerator.main_process_first():
            tokens = [tokenize_texts(recs.folder, model.tokenizer, config.text.max_length, show)
                      if model.tokenizer is not None else None for recs in (train_recs, val_recs)]
        train_collate, val_collate = (model.make_collator(dedup=tc.dedup_text, tokens=t) for t in tokens)
    train_loader = _loader(train_recs, train_collate, tc.batch_size, tc.seed, sampler, tc.num_workers)
    val_loader = _loader(val_recs, val_collate, tc.eval_batch_size, tc.seed, workers=tc.num_workers)
    loss_fn = loss_function(tc, class_weights(arrow["label_counts"] if arrow else [r["label"] for r in train_recs],
                                              model.labels) if tc.class_weights else None)
    optimizer = torch.optim.AdamW(model.param_groups(tc.lr, tc.encoder_lr, tc.weight_decay), lr=tc.lr)
    # a prepared scheduler steps once per process per optimizer step: count its steps times P
    P = accelerator.num_processes
    steps_per_epoch = math.ceil(math.ceil(len(train_recs) / (tc.batch_size * P)) / tc.gradient_accumulation_steps)
    total = min(steps_per_epoch * tc.epochs, tc.max_steps or steps_per_epoch * tc.epochs)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(tc.warmup_ratio * total) * P, total * P)
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler)
    # checkpoints leave out the frozen pretrained weights (rebuilt from the base model): MBs, not ~90 MB
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    accelerator.register_save_state_pre_hook(
        lambda models, weights, _: [w.pop(k, None) for w in weights for k in frozen])

    state = TrainerState(fingerprint=fingerprint)
    if ckpt is not None:
        try:
            with warnings.catch_warnings():  # torch's note on a planted pickle's protocol: the error below says it
                warnings.filterwarnings("ignore", message=".*pickle protocol.*")
                accelerator.load_state(str(ckpt), strict=False)  # strict=False: the frozen weights are not in the file
        except (RuntimeError, ValueError, KeyError) as e:  # size mismatch, another optimizer layout
            raise ResumeError(f"{ckpt}: the checkpoint does not fit this model ({' '.join(str(e).split())[:200]}); "
                              "model sizes changed since it was saved. Train without --resume (into a new "
                              "--output-dir to keep the old run)") from None
        except pickle.UnpicklingError:  # torch's weights_only refused a planted object: it was never run
            raise ResumeError(f"{refused_pickle(ckpt)}: holds pickled objects other than tensors, so it was not "
                              "loaded (trendnlp loads weights from safetensors only and never runs pickled code); "
                              f"remove {ckpt} (an earlier checkpoint is then resumed) or train without --resume"
                              ) from None
        state = TrainerState(**{**json.loads((ckpt / STATE_FILE).read_text()), "fingerprint": fingerprint})
        if resume_anyway:
            apply_new_hyperparameters(optimizer, scheduler, model, tc)
        if state.stopped == "max_steps" and (not tc.max_steps or state.step < tc.max_steps):
            state.stopped = ""  # resumed with a larger step budget
        accelerator.print(f"resuming from {ckpt} (epoch {state.epoch + 1}, step {state.step})")
    if accelerator.log_with:
        accelerator.init_trackers("trendnlp", config=_flat(config.to_dict()))
    if show:
        rep = accelerator.unwrap_model(model).trainable_parameter_report()
        print(f"train {len(train_recs)} / validation {len(val_recs)} records, {steps_per_epoch} steps per epoch on "
              f"{P} process(es); trainable parameters {rep['trainable']:,} of {rep['total']:,} ({rep['percent']:.2f}%)")

    while state.epoch < tc.epochs and not state.stopped:
        train_loader.set_epoch(state.epoch)
        sampler.set_epoch(state.epoch)  # the same order whether or not this epoch is a resumed one
        loader = (accelerator.skip_first_batches(train_loader, state.batches_done) if state.batches_done
                  else train_loader)
        model.train()
        bar = tqdm(total=len(train_loader), initial=state.batches_done, desc=f"epoch {state.epoch + 1}/{tc.epochs}",
                   disable=not show)
        t0 = time.perf_counter()
        for batch in loader:
            with accelerator.accumulate(model):
                y = batch.pop("labels")
                outputs = model(**batch)
                loss = loss_fn(outputs["logits"], y)
                if outputs.get("change_loss") is not None:  # fusion.change_head: multi-task regression on `change`
                    loss = loss + tc.change_weight * outputs["change_loss"]
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state.batches_done, state.loss_count = state.batches_done + 1, state.loss_count + 1
            state.loss_sum += loss.item()
            if "text_index" in batch:  # (U, L) distinct texts for (B,) records
                state.texts, state.records = state.texts + len(batch["input_ids"]), state.records + len(y)
            bar.update(1)
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            bar.set_postfix(loss=f"{state.loss_sum / state.loss_count:.4f}", step=state.step)
            accelerator.log({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0]}, step=state.step)
            at_max = bool(tc.max_steps) and state.step >= tc.max_steps
            if tc.save_steps and state.step % tc.save_steps == 0 and not (
                    at_max or accelerator.gradient_state.end_of_dataloader):  # those save at the epoch end below
                state.train_seconds, t0 = state.train_seconds + time.perf_counter() - t0, time.perf_counter()
                _checkpoint(accelerator, out, state)
            if on_step is not None:
                on_step(state.step, model, accelerator)
            if at_max:
                state.stopped = "max_steps"
                break
        bar.close()
        state.train_seconds += time.perf_counter() - t0
        _end_epoch(accelerator, model, val_loader, out, state, tc, show)
    if tc.calibrate_temperature and state.best_epoch:
        _fit_temperature(accelerator, config, out, val_recs, state, show)
    result = _finish(accelerator, config, out, state, test_recs, show)
    accelerator.end_training()
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


def _end_epoch(accelerator: Accelerator, model, val_loader, out: Path, state: TrainerState, tc: TrainConfig,
               show: bool) -> None:
    """Validate, record the epoch, export the model if it is the best so far, early-stop, checkpoint."""
    t0, n = time.perf_counter(), state.epoch + 1
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.logit_bias.zero_()  # score the model itself, then (optionally) fit this epoch's offsets
    probs, y = predict_loader(model, val_loader, accelerator, "validation", show)
    val = _scores(unwrapped.labels, probs, y)
    calibration = {}
    if tc.calibrate_bias:  # every process fits the same offsets on the same gathered predictions
        bias = fit_logit_bias(probs, y)
        unwrapped.logit_bias.copy_(torch.from_numpy(bias))
        calibration = {"logit_bias": bias.tolist(), "uncalibrated_macro_f1": val["macro_f1"]}
        val = _scores(unwrapped.labels, biased_scores(probs, bias), y)
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
        _export(accelerator, model, out, {"best_epoch": n, "step": state.step, "validation": val})
    else:
        state.bad_epochs += 1
        if tc.patience > 0 and state.bad_epochs >= tc.patience and not state.stopped:
            state.stopped = "early_stopping"
            accelerator.print(f"early stopping: no validation macro-F1 gain for {state.bad_epochs} epoch(s)")
    if accelerator.is_main_process:
        _write_json(out / "metrics" / f"epoch_{n}.json", row)
        _write_json(out / "metrics" / "history.json", state.history)
        plot_training_curves(state.history, out / "training_curves.png")
    state.new_epoch()
    _checkpoint(accelerator, out, state)


def _fit_temperature(accelerator: Accelerator, config: TrendConfig, out: Path, val_recs: list, state: TrainerState,
                     show: bool) -> None:
    """Fit the exported best model's temperature on validation (its offsets applied first) and re-save it."""
    clf = TrendClassifier.from_pretrained(out / "model", merge_lora=False)  # unmerged: it is saved again
    clf.temperature.fill_(1.0)
    loader = _loader(val_recs, clf.make_collator(), config.train.eval_batch_size, config.train.seed)
    prepared = accelerator.prepare_model(clf, evaluation_mode=True)
    probs, y = predict_loader(prepared, accelerator.prepare_data_loader(loader), accelerator, "temperature", show)
    T = fit_temperature(probs, y)  # every process fits the same T on the same gathered predictions
    clf.temperature.fill_(T)
    rep = calibration_report(temper(probs, T), y, T)
    best = next(h for h in state.history if h["epoch"] == state.best_epoch)
    best["temperature"] = T
    accelerator.print(f"temperature {T:.3f} (validation ECE {rep['ece_before']:.4f} -> {rep['ece_after']:.4f})")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # save_pretrained replaces the folder atomically: carry the exported metrics.json over
        metrics_path = out / "model" / "metrics.json"
        metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else None
        clf.save_pretrained(out / "model")
        if metrics is not None:
            _write_json(metrics_path, {**metrics, "temperature": T})
            write_model_card(out / "model")  # with the metrics again
        _write_json(out / "metrics" / "history.json", state.history)
    accelerator.wait_for_everyone()


def _export(accelerator: Accelerator, model, out: Path, metrics: dict) -> None:
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        unwrapped.save_pretrained(out / "model")
        _write_json(out / "model" / "metrics.json", metrics)
        write_model_card(out / "model")  # the card now shows the validation metrics
        plot_confusion_matrix(metrics["validation"], out / "confusion_matrix_validation.png",
                              f"validation, epoch {metrics['best_epoch']}")
    accelerator.wait_for_everyone()


def _finish(accelerator: Accelerator, config: TrendConfig, out: Path, state: TrainerState, test_recs,
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
    loader = accelerator.prepare_data_loader(_loader(test_recs, clf.make_collator(), config.train.eval_batch_size,
                                                     config.train.seed))
    probs, y = predict_loader(clf, loader, accelerator, "test", show)
    result["test"] = test = _scores(clf.labels, probs, y)
    calib = calibration_report(probs, y, float(accelerator.unwrap_model(clf).temperature))
    test["calibration"] = summary = {k: v for k, v in calib.items() if not k.startswith("bins")}
    accelerator.print(f"test (best epoch {state.best_epoch}): macro-F1 {test['macro_f1']:.4f}, "
                      f"accuracy {test['accuracy']:.4f}, ECE {summary['ece_before']:.4f} -> {summary['ece_after']:.4f} "
                      f"(temperature {summary['temperature']:.3f})")
    if accelerator.is_main_process:
        _write_json(out / "metrics" / "test.json", test)
        _write_json(out / "model" / "metrics.json", {"best_epoch": state.best_epoch, "step": best["step"],
                                                     "validation": best["validation"], "test": test})
        write_model_card(out / "model")
        plot_confusion_matrix(test, out / "confusion_matrix_test.png", "test, best model")
        plot_reliability_diagram(calib, out / "reliability_test.png", "test, best model")
    return result


# ---- evaluation of a saved model -----------------------------------------------------------------
def evaluate(model_dir: str | Path, data: Any, out_dir: str | Path | None = None, batch_size: int = 128,
             on_error: str = "raise", min_confidence: float | None = None) -> dict:
    """Score a saved model on labelled records (metrics.json, confusion_matrix.png and reliability.png in out_dir).

    Args:
        model_dir: a folder written by TrendClassifier.save_pretrained (e.g. runs/x/model).
        data: a records path (.jsonl/.csv/.parquet), DataFrame, dict or list of dicts with label or future_sales.
        out_dir: when given, metrics.json and confusion_matrix.png (and errors.csv of skipped rows) go there.
        batch_size: records per forward pass.
        on_error: "raise" on the first bad row, or "skip" it (reported in out_dir/errors.csv).
        min_confidence: also report coverage and accuracy of the records whose top probability is >= this.
    Returns:
        the `metrics.classification_metrics` dict plus "calibration" (ECE and Brier before / after the model's
        temperature) and, with min_confidence, "min_confidence" (threshold, coverage, n, accuracy).

    >>> evaluate("runs/default/model", "data_samples/test.jsonl")["macro_f1"]  # doctest: +SKIP
    """
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be a probability in [0, 1], found {min_confidence}")
    clf = TrendClassifier.from_pretrained(model_dir)
    report = ErrorReport()
    recs = read_records(data, on_error=on_error, history=clf.config.sales.history, rule=clf.config.labels.rule(),
                        report=report)
    missing = [r["product_id"] for r in recs if r["label"] is None]
    if missing or not recs:
        raise ValueError(f"evaluate needs labelled records (label or future_sales); {len(missing)} of {len(recs)} "
                         f"have neither, e.g. product_id={missing[:3]}")
    probs = clf.predict_proba(recs, batch_size=batch_size)
    metrics = classification_metrics([r["label"] for r in recs], probs.argmax(1), clf.labels)
    y = np.array([clf.labels.index(r["label"]) for r in recs])
    calib = calibration_report(probs, y, float(clf.temperature))
    metrics["calibration"] = {k: v for k, v in calib.items() if not k.startswith("bins")}
    if min_confidence is not None:
        metrics["min_confidence"] = coverage_accuracy(probs, y, [min_confidence])[0]
    if out_dir is not None:
        out = Path(out_dir)
        _write_json(out / "metrics.json", metrics)
        name = Path(data).name if isinstance(data, (str, Path)) else "records"
        plot_confusion_matrix(metrics, out / "confusion_matrix.png", name)
        plot_reliability_diagram(calib, out / "reliability.png", name)
        if len(report):
            report.write(out / "errors.csv")
    return metrics


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _flat(d: dict) -> dict:
    """Nested config -> {"section.key": scalar} for tracker hyper-parameters (lists become strings)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flatten(d).items()}
