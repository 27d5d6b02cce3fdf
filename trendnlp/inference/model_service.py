"""The model behind `trendnlp serve`: one loaded version at a time, swapped atomically by `reload`.

A `Loaded` is everything one model version needs to answer (the runtime, its `Predictor` with its own text
cache, the folder's fingerprint and metadata). `ModelService.current` points at one; a request or a batch
reads it once and finishes on that version, whatever happens meanwhile. `reload` loads a folder beside the
running version, checks it (the same labels, label rule, history and channels as the running one, so every
request valid for one is valid for the other; then a probe prediction with finite probabilities summing to
1), and only then replaces `current` in one assignment. A folder that fails leaves the running version
serving and raises `ReloadError` with the reason.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trendnlp.data.record_files.channels import fed_channels
from trendnlp.data.record_files.io import RecordError
from trendnlp.data.record_files.records import validate_rows
from trendnlp.data.record_files.schema import record_fields
from trendnlp.inference.labeling_args import BATCH_SIZE, TEXT_CACHE

log = logging.getLogger("trendnlp.serve")


class ReloadError(ValueError):
    """A model folder failed its check; the running version keeps serving."""


def folder_version(folder: str | Path) -> str:
    """16 hex digits identifying a model folder's files (names and bytes): the served model's version.

    >>> folder_version("runs/demo/model")  # doctest: +SKIP
    '3f2a9c0d1b7e4a55'
    """
    h = hashlib.blake2b(digest_size=8)
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@dataclass
class Loaded:
    """One model version: runtime, predictor (with its own text cache), version and metadata."""

    clf: Any
    labeler: Any
    model_dir: str | None
    version: str
    meta: dict = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return list(self.clf.labels)


def load_version(model: Any, batch_size: int, text_cache: int) -> Loaded:
    """A model folder (or a TrendClassifier) as a `Loaded`, with its metadata."""
    from trendnlp.model.load import load_model
    from trendnlp.model.predict import Predictor

    model_dir = str(model) if isinstance(model, (str, Path)) else None
    clf = load_model(model) if model_dir else (model.eval() if hasattr(model, "eval") else model)
    version = folder_version(model_dir) if model_dir else "in-memory"
    loaded = Loaded(clf, Predictor(clf, batch_size=batch_size, text_cache=text_cache), model_dir, version)
    loaded.meta = _metadata(loaded)
    return loaded


def _metadata(m: Loaded) -> dict:
    c = m.clf.config
    meta: dict[str, Any] = {"labels": m.labels, "label_rule": asdict(c.labels.rule()), "history": c.sales.history,
                            "inputs": {"text": c.text.enabled, "sales": c.sales.enabled},
                            "channels": ["sales", *(ch.name for ch in fed_channels(c.sales))],
                            "base_model": c.text.base_model if c.text.enabled else None,
                            "fusion": c.fusion.method, "model_dir": m.model_dir, "model_version": m.version,
                            "versions": {}, "training": None, "kind": getattr(m.clf, "kind", "neural"), "hybrid": None}
    if m.model_dir:
        d = Path(m.model_dir)
        saved = json.loads((d / "config.json").read_text(encoding="utf-8"))
        meta["versions"], meta["hybrid"] = saved.get("versions", {}), saved.get("hybrid")  # blend, branch scores
        if (d / "metrics.json").is_file():
            s = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
            meta["training"] = {"best_epoch": s.get("best_epoch"), "step": s.get("step"),
                                **{f"{split}_{k}": s[split][k] for split in ("validation", "test")
                                   if s.get(split) for k in ("macro_f1", "accuracy", "n")}}
    return meta


def _contract(meta: dict) -> dict:
    """What a request relies on: two versions with the same contract accept and answer the same requests."""
    return {k: meta[k] for k in ("labels", "label_rule", "history", "channels", "inputs")}


def _unknown_field(raw: Any, index: int) -> RecordError | None:
    """The error for a request record with a field the record declaration lacks (validated in its turn)."""
    fields = record_fields()
    extra = next((k for k in raw if k not in fields), None) if isinstance(raw, dict) else None
    if extra is None:
        return None
    return RecordError("request", index, str(extra), f"unknown field; a record's fields are {', '.join(fields)}",
                       str(raw.get("product_id")) if raw.get("product_id") is not None else None)


def probe_record(history: int) -> dict:
    """A plain valid record for the probe prediction of a freshly loaded version."""
    return {"product_id": "__reload_probe__", "title": "reload probe product", "cutoff": "2024-01-07",
            "sales": [float(1 + i % 5) for i in range(history)]}


class ModelService:
    """The served model: validation, predictions and explanations on the current version, and `reload`.

    Args:
        model: a saved model folder or a `TrendClassifier`.
        batch_size: distinct texts per text-encoder pass.
        text_cache: pooled text embeddings kept across requests, per version (0: none).
    """

    def __init__(self, model: Any, batch_size: int = BATCH_SIZE, text_cache: int = TEXT_CACHE):
        self.batch_size, self.text_cache = batch_size, text_cache
        self.current = load_version(model, batch_size, text_cache)
        self.lock = threading.Lock()  # one model call at a time when batching is off, and for explain
        self._reloading = threading.Lock()

    @property
    def clf(self):
        return self.current.clf

    def validate(self, records: list[dict]) -> list[dict]:
        """Normalised records, as `predict_proba` reads them; RecordError (row = index) on the first bad one.

        The readers' rules, once; and a request names only declared fields (a misspelt `cutof` would otherwise
        be dropped without a word)."""
        rows = ((i, _unknown_field(raw, i) or raw) for i, raw in enumerate(records))
        return [rec for _, rec in validate_rows(rows, source="request", **self.current.clf.record_rules())]

    def score(self, records: list[dict]) -> tuple[np.ndarray, Loaded]:
        """(n, n_labels) probabilities of validated records from one version, and that version."""
        m = self.current  # read once: this call finishes on this version whatever a reload does meanwhile
        return m.labeler(records).probs, m

    def explain(self, records: list[dict], **options: Any) -> tuple[list[dict], Loaded]:
        m = self.current
        with self.lock:
            return m.clf.explain(records, **options), m

    def reload(self, model: str | Path | None = None) -> dict:
        """Load `model` (default: the folder now served, read again), check it, then switch to it.

        Returns:
            {"model_version", "previous_version", "model_dir"}.
        Raises:
            ReloadError: the folder is missing, does not load or fails its check; the old version still serves.
        """
        with self._reloading:  # one reload at a time; requests go on meanwhile
            old = self.current
            target = model if model is not None else old.model_dir
            if target is None:
                raise ReloadError("no model folder to reload: the server was started with an in-memory model")
            if not Path(target).is_dir():
                raise ReloadError(f"model folder {target} not found; still serving version {old.version}")
            try:
                new = load_version(str(target), self.batch_size, self.text_cache)
            except Exception as e:  # noqa: BLE001  (any load failure is a reason to keep the old version)
                raise ReloadError(f"model folder {target} does not load ({type(e).__name__}: {e}); "
                                  f"still serving version {old.version}") from None
            self._check(new, old)
            self.current = new  # the atomic switch: one reference assignment
        log.info("reloaded model %s: version %s -> %s", target, old.version, new.version)
        return {"model_version": new.version, "previous_version": old.version, "model_dir": new.model_dir}

    @staticmethod
    def _check(new: Loaded, old: Loaded) -> None:
        was, now = _contract(old.meta), _contract(new.meta)
        differ = [k for k in was if was[k] != now[k]]
        if differ:
            k = differ[0]
            raise ReloadError(f"model folder {new.model_dir}: {k} {now[k]} differ from the serving model's {was[k]} "
                              f"(a swap must keep what requests rely on); still serving version {old.version}")
        try:
            probe = [rec for _, rec in validate_rows([(0, probe_record(new.meta["history"]))], source="probe")]
            probs = new.labeler(probe).probs
            ok = probs.shape == (1, len(new.labels)) and np.isfinite(probs).all() and abs(probs.sum() - 1) < 1e-3
        except Exception as e:  # noqa: BLE001
            raise ReloadError(f"model folder {new.model_dir}: the probe prediction failed ({type(e).__name__}: {e}); "
                              f"still serving version {old.version}") from None
        if not ok:
            raise ReloadError(f"model folder {new.model_dir}: the probe prediction gave {probs.tolist()}, not "
                              f"probabilities; still serving version {old.version}")
