"""The Accelerate training loop: weighted or focal loss, validation per epoch, early stopping on validation
macro-F1, resumable checkpoints, export of the best model.

The shape is accelerate's examples/complete_nlp_example.py: set_seed -> build -> prepare -> accumulate /
backward -> clip under sync_gradients -> gather_for_metrics; save_state / load_state + skip_first_batches
to resume; wait_for_everyone -> unwrap_model -> save_pretrained on the main process to export.

The output folder of `train`:
    config.yaml                 the resolved config
    errors.csv                  rows skipped under data.on_error=skip
    metrics/epoch_{n}.json      train loss, validation metrics and timings of epoch n (1-based); history.json
    metrics/test.json           the best model on data.test (when set)
    model/                      the best model (TrendClassifier.save_pretrained) with metrics.json and its card
    checkpoints/checkpoint_{i}/ accelerate state + trainer_state.json (the last two are kept)
    training_curves.png, confusion_matrix_{validation,test}.png, logs/ (tensorboard)
"""
from __future__ import annotations

import json
import math
import pickle
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import ProjectConfiguration, is_tensorboard_available, set_seed
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from trendnlp.config import TrainConfig, TrendConfig
from trendnlp.data.record_files.fingerprint import flatten, run_fingerprint
from trendnlp.errors import ResumeError
from trendnlp.outputs import exclusive_output, rank_tag
from trendnlp.model.classifier import TrendClassifier
from trendnlp.training.data import TrainData, check_data_files, load_data
from trendnlp.training.loss import class_weights, loss_function
from trendnlp.training.state import (KEEP_CHECKPOINTS, STATE_FILE, TrainerState, apply_new_hyperparameters,
                                     check_resumable, continue_numbering, latest_checkpoint, refused_pickle,
                                     save_checkpoint)
from trendnlp.training.steps import end_epoch, finish, warm_start


def make_accelerator(cfg: TrainConfig, output_dir: Path) -> Accelerator:
    """An Accelerator for cfg: CPU (gloo between processes) when no CUDA device exists, precision, trackers,
    rotating checkpoints under output_dir/checkpoints, and the seedable sampler for shuffled loaders."""
    cpu = not torch.cuda.is_available()
    if cfg.mixed_precision == "fp16" and cpu:
        raise ValueError("train.mixed_precision=fp16 needs a CUDA GPU (fp16 autocast with loss scaling is not "
                         "supported on CPU); use --set train.mixed_precision=bf16 or no")
    if cfg.log_with not in ("auto", "none", "tensorboard"):
        raise ValueError(f"config: train.log_with must be auto, none or tensorboard, found {cfg.log_with!r}")
    if cfg.log_with == "tensorboard" and not is_tensorboard_available():
        raise ValueError("train.log_with=tensorboard but tensorboard is not installed: pip install tensorboard, "
                         "or --set train.log_with=none")
    try:
        return Accelerator(
            cpu=cpu, mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            log_with="tensorboard" if cfg.log_with != "none" and is_tensorboard_available() else None,
            project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs"),
                                                automatic_checkpoint_naming=True, total_limit=KEEP_CHECKPOINTS),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
            # the empty-text embedding gets no gradient in batches where every record has text
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    except ValueError as e:  # accelerate's state is per process: one precision per Python process
        raise ValueError(f"train.mixed_precision={cfg.mixed_precision}: this Python process already trained with "
                         f"another precision, and accelerate keeps one per process ({e}); run it in a new process")


@exclusive_output(lambda a: (a["output_dir"], "--output-dir", rank_tag()))  # one run per folder (its checkpoints)
def train(config: TrendConfig, output_dir: str | Path, resume: bool = False, progress: bool = True,
          on_step: Callable[[int, Any, Accelerator], None] | None = None, resume_anyway: bool = False,
          init_from: str | Path | None = None, splits: tuple | None = None, export_last: bool = False) -> dict:
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
        splits: (train, validation, test) validated record lists to use instead of reading config.data (refit).
        export_last: export every epoch, so the last one is the model (refit: the epochs are already chosen).
    Returns:
        dict with best_epoch, validation (the best epoch's metrics), test (or None), steps, epochs,
        stopped ("epochs", "early_stopping" or "max_steps"), model_dir, history and is_main_process; with
        model.kind hybrid or boosting (training/hybrid.py) validation and test are the saved model's, plus
        kind, blend_weight and branches ({"neural": {"validation", "test"}, "boosting": {...}}: each alone).

    >>> cfg = TrendConfig.from_yaml("configs/default.yaml")  # doctest: +SKIP
    >>> train(cfg, "runs/default")["validation"]["macro_f1"]  # doctest: +SKIP
    """
    out, tc = Path(output_dir), config.train
    if splits is None:
        check_data_files(config)  # a config without data writes nothing into the run folder
    if (config.model.kind != "neural" or tc.refit) and config.data.arrow:
        raise ValueError(f"config: {'train.refit' if tc.refit else 'model.kind=' + config.model.kind} reads the "
                         "records into memory; set data.arrow=false (or model.kind=neural, train.refit=false)")
    if config.model.kind == "boosting":  # no neural branch: nothing for the loop to do
        return _train_boosting(config, out, progress, splits)
    accelerator = make_accelerator(tc, out)  # refuses fp16 on CPU before any heavy work
    if tc.refit and accelerator.num_processes > 1:
        raise ValueError("train.refit runs in one process; launch without accelerate's multi-process launcher")
    show = progress and accelerator.is_local_main_process
    ckpt, fingerprint = _checkpoint(config, out, resume, resume_anyway)
    # the data is read and checked (labels, channels) before the run folder gets its config and loses old state
    data = TrainData(*splits) if splits is not None else load_data(config, accelerator, out)
    _start(accelerator, config, out, resume)

    set_seed(tc.seed)
    model = TrendClassifier(config)
    if init_from:  # scaling and every weight from the exported model, not refitted on the new data
        model = warm_start(model, init_from)
    else:
        data.fit_scaling(model)
    train_loader, val_loader = data.loaders(model, tc, accelerator, show)
    loss_fn = loss_function(tc, class_weights(data.label_counts(), model.labels) if tc.class_weights else None)
    optimizer = torch.optim.AdamW(model.param_groups(tc.lr, tc.encoder_lr, tc.weight_decay), lr=tc.lr)
    # a prepared scheduler steps once per process per optimizer step: count its steps times P
    P = accelerator.num_processes
    steps_per_epoch = math.ceil(math.ceil(len(data.train) / (tc.batch_size * P)) / tc.gradient_accumulation_steps)
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
        state = _resume(accelerator, ckpt, fingerprint, (optimizer, scheduler, model), tc, resume_anyway)
    if accelerator.log_with:
        accelerator.init_trackers("trendnlp", config=_flat(config.to_dict()))
    if show:
        rep = accelerator.unwrap_model(model).trainable_parameter_report()
        print(f"train {len(data.train)} / validation {len(data.validation)} records, {steps_per_epoch} steps per "
              f"epoch on {P} process(es); trainable parameters {rep['trainable']:,} of {rep['total']:,} "
              f"({rep['percent']:.2f}%)")

    while state.epoch < tc.epochs and not state.stopped:
        _train_epoch(accelerator, (model, optimizer, scheduler, loss_fn), train_loader, state, tc, on_step, show)
        if export_last:  # every epoch beats "none yet": each is exported, the last one stays
            state.best_f1 = -1.0
        end_epoch(accelerator, model, val_loader, out, state, tc, show)
    result = finish(accelerator, config, out, state, data.test, show)
    if config.model.kind == "hybrid" and result["best_epoch"] is not None:
        from trendnlp.training.hybrid import add_boosting

        if accelerator.is_main_process:  # one process fits the booster and rewrites the folder
            result = add_boosting(config, out, data.train, data.validation, data.test, result, show)
        accelerator.wait_for_everyone()
    accelerator.end_training()
    if tc.refit and result["best_epoch"] is not None:
        from trendnlp.training.refit import refit

        result = refit(train, config, out, (data.train, data.validation, data.test), result, show)
    return result


def _train_boosting(config: TrendConfig, out: Path, progress: bool, splits: tuple | None) -> dict:
    """model.kind=boosting: the boosting branch alone (training/hybrid.py), then train.refit."""
    from trendnlp.training.data import load_splits
    from trendnlp.training.hybrid import train_boosting

    splits = splits or load_splits(config, out / "errors.csv")  # checked before the run folder is written
    out.mkdir(parents=True, exist_ok=True)
    config.save_yaml(out / "config.yaml")
    result = train_boosting(config, out, splits, progress)
    if config.train.refit:
        from trendnlp.training.refit import refit

        result = refit(train, config, out, splits, result, progress)
    return result


def _train_epoch(accelerator: Accelerator, parts: tuple, train_loader, state: TrainerState, tc: TrainConfig,
                 on_step, show: bool) -> None:
    """One epoch (or its rest, after a mid-epoch resume) of accumulate / backward / clip / step, with step
    checkpoints every train.save_steps; `parts`: the prepared model, optimizer, scheduler and the loss."""
    model, optimizer, scheduler, loss_fn = parts
    train_loader.set_epoch(state.epoch)  # the same order whether or not this epoch is a resumed one
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
                at_max or accelerator.gradient_state.end_of_dataloader):  # those save at the epoch end (end_epoch)
            state.train_seconds, t0 = state.train_seconds + time.perf_counter() - t0, time.perf_counter()
            save_checkpoint(accelerator, state)
        if on_step is not None:
            on_step(state.step, model, accelerator)
        if at_max:
            state.stopped = "max_steps"
            break
    bar.close()
    state.train_seconds += time.perf_counter() - t0


def _checkpoint(config: TrendConfig, out: Path, resume: bool, anyway: bool):
    """The checkpoint to resume from (None for a fresh run) and the run's fingerprint; writes nothing."""
    ckpt = latest_checkpoint(out) if resume else None
    if resume and ckpt is None:
        raise FileNotFoundError(f"resume=True but {out / 'checkpoints'} holds no complete checkpoint; "
                                "run without --resume")
    fingerprint = run_fingerprint(config)
    if ckpt is not None:
        check_resumable(ckpt, fingerprint, anyway)
    return ckpt, fingerprint


def _start(accelerator: Accelerator, config: TrendConfig, out: Path, resume: bool) -> None:
    """The run folder of an accepted run: a fresh run's old checkpoints and metrics removed, the resolved config
    written to out/config.yaml."""
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        for old in ("checkpoints", "metrics"):  # a later --resume must never pick up an older run's state
            if not resume and (out / old).exists():
                shutil.rmtree(out / old)
        config.save_yaml(out / "config.yaml")
    accelerator.wait_for_everyone()


def _resume(accelerator: Accelerator, ckpt: Path, fingerprint: dict, prepared: tuple, tc: TrainConfig,
            anyway: bool) -> TrainerState:
    """load_state from `ckpt` and the trainer state saved with it; with `anyway`, this run's learning rates and
    weight decay replace the checkpoint's (`prepared`: optimizer, scheduler, model)."""
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
    continue_numbering(accelerator, ckpt.parent.parent)
    state = TrainerState(**{**json.loads((ckpt / STATE_FILE).read_text()), "fingerprint": fingerprint})
    if anyway:
        apply_new_hyperparameters(*prepared, tc)
    if state.stopped == "max_steps" and (not tc.max_steps or state.step < tc.max_steps):
        state.stopped = ""  # resumed with a larger step budget
    accelerator.print(f"resuming from {ckpt} (epoch {state.epoch + 1}, step {state.step})")
    return state


def _flat(d: dict) -> dict:
    """Nested config -> {"section.key": scalar} for tracker hyper-parameters (lists become strings)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flatten(d).items()}
