"""What a training run was made of: the resolved config and the content of its data files, as one JSON dict.

A checkpoint stores it; `--resume` compares it with the new run's and refuses a silent mix of two runs
(another learning rate, other model sizes, a regenerated train file) unless the user says `--resume-anyway`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from trendnlp.config import TrendConfig

# keys that may change between an interrupted run and its resume without changing what was trained so far
RESUMABLE_KEYS = ("train.epochs", "train.max_steps", "train.patience", "train.num_workers", "train.log_with",
                  "train.save_steps", "train.eval_batch_size", "data.test")


def file_digest(path: str | Path, chunk: int = 1 << 22) -> dict:
    """{"size", "blake2b"} of a file's content (not its mtime: a copy of the same data is the same data).

    >>> file_digest(__file__)["size"] > 0
    True
    """
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return {"size": Path(path).stat().st_size, "blake2b": h.hexdigest()}


def run_fingerprint(config: TrendConfig) -> dict:
    """{"config": flat resolved config, "data": {key: digest}} for config.data's train / validation files.

    >>> sorted(run_fingerprint(TrendConfig()))
    ['config', 'data']
    """
    flat = flatten(config.to_dict())
    data = {}
    for key in ("train", "validation"):
        path = getattr(config.data, key)
        if path and Path(path).is_file():
            data[f"data.{key}"] = {"path": str(Path(path).resolve()), **file_digest(path)}
    return {"config": flat, "data": data}


def fingerprint_diff(old: dict, new: dict) -> list[str]:
    """Human-readable differences between a checkpoint's fingerprint and this run's (resumable keys ignored).

    >>> fingerprint_diff({"config": {"train.lr": 0.001}, "data": {}}, {"config": {"train.lr": 0.01}, "data": {}})
    ['train.lr: 0.001 -> 0.01']
    """
    diffs = []
    old_cfg, new_cfg = old.get("config", {}), new.get("config", {})
    for key in sorted(set(old_cfg) | set(new_cfg)):
        if key not in RESUMABLE_KEYS and old_cfg.get(key) != new_cfg.get(key):
            diffs.append(f"{key}: {old_cfg.get(key)!r} -> {new_cfg.get(key)!r}")
    old_data, new_data = old.get("data", {}), new.get("data", {})
    for key in sorted(set(old_data) | set(new_data)):
        a, b = old_data.get(key) or {}, new_data.get(key) or {}
        if a.get("blake2b") != b.get("blake2b"):
            diffs.append(f"{key}: the content of {b.get('path') or a.get('path')} changed "
                         f"({a.get('size')} -> {b.get('size')} bytes)")
    return diffs


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dict -> {"section.key": value}.

    >>> flatten({"train": {"lr": 0.1}})
    {'train.lr': 0.1}
    """
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out
