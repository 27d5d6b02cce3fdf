"""Resumable state: the trainer's counters (trainer_state.json), checkpoints and their rotation, and the
fingerprint check that refuses to resume a checkpoint of another config or other data.

Checkpoints are accelerate's own: `ProjectConfiguration(automatic_checkpoint_naming=True, total_limit=...)`
names them checkpoints/checkpoint_{i} and deletes the oldest; trainer_state.json is written after
`save_state` returns, so its presence marks a complete save (a folder without it is never resumed from).
"""
from __future__ import annotations

import json
import logging
import pickle
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator

from trendnlp.config import TrainConfig
from trendnlp.data.record_files.fingerprint import fingerprint_diff
from trendnlp.data.record_files.io import write_json
from trendnlp.errors import ResumeError
from trendnlp.model.base_models import PICKLE_SUFFIXES

STATE_FILE = "trainer_state.json"  # written last into a checkpoint folder: its presence marks the save complete
KEEP_CHECKPOINTS = 2  # accelerate's total_limit


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


def _number(p: Path) -> int:
    return int(p.name.rpartition("_")[2])


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder under output_dir/checkpoints (None when there is none)."""
    done = [p for p in (Path(output_dir) / "checkpoints").glob("checkpoint_*") if (p / STATE_FILE).exists()]
    return max(done, key=_number, default=None)


def save_checkpoint(accelerator: Accelerator, state: TrainerState) -> None:
    """save_state into the next checkpoints/checkpoint_{i} (accelerate rotates them), then the trainer state."""
    accelerator.wait_for_everyone()
    accelerate_log = logging.getLogger("accelerate.accelerator")
    level = accelerate_log.level
    accelerate_log.setLevel(logging.ERROR)  # its "Deleting 1 checkpoints to make room" notice, every save
    try:
        path = Path(accelerator.save_state())  # model as safetensors; optimizer, scheduler, RNG states
    finally:
        accelerate_log.setLevel(level)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(path / STATE_FILE, asdict(state))
    accelerator.wait_for_everyone()


def continue_numbering(accelerator: Accelerator, output_dir: Path) -> None:
    """Before a resumed run saves: drop incomplete checkpoint folders (a save cut short) so rotation never keeps
    them over complete ones, and number the next save after the newest one left."""
    folders = sorted((Path(output_dir) / "checkpoints").glob("checkpoint_*"), key=_number)
    if accelerator.is_main_process:
        for p in folders:
            if not (p / STATE_FILE).exists():
                shutil.rmtree(p)
    accelerator.wait_for_everyone()
    accelerator.project_configuration.iteration = _number(folders[-1]) + 1 if folders else 0


def refused_pickle(ckpt: Path) -> Path:
    """The first file of a checkpoint that torch's safe loader (weights_only) refuses; the folder if none is."""
    for f in sorted(p for p in ckpt.rglob("*") if p.is_file() and p.suffix in PICKLE_SUFFIXES):
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
    run's lr / encoder_lr / weight_decay in their place, at the schedule's current position (the current
    multiplier is the restored lr over the restored base lr; the scheduler scales `base_lrs` from its next step)."""
    unwrapped = getattr(model, "module", model)  # DDP wraps the model
    new = {g["name"]: g for g in unwrapped.param_groups(tc.lr, tc.encoder_lr, tc.weight_decay)}
    sched = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps the torch scheduler
    for i, group in enumerate(optimizer.param_groups):  # same groups, same order as built (names restored)
        g = new[group["name"]]
        factor = group["lr"] / sched.base_lrs[i] if sched.base_lrs[i] else 0.0
        group["initial_lr"], group["weight_decay"] = g["lr"], g["weight_decay"]
        sched.base_lrs[i] = g["lr"]
        group["lr"] = g["lr"] * factor
