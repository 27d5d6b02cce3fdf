"""Text branch: a BERT-family encoder (AutoModel, sdpa attention), optionally wrapped with peft LoRA, pooled.

The base model is wrapped, never subclassed (peft's pattern): `self.model` is either the plain
`PreTrainedModel` (finetune "off" / "full", or LoRA after `merge_lora`) or a `peft.PeftModel`.

    input_ids, attention_mask  (U, L)   U distinct texts of a batch, L tokens
    forward_tokens ->          (U, L, H) token states, (U, L) mask
    forward / pool ->          (U, H)   mean or CLS pooled
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from trendnlp.config import TextConfig
from trendnlp.model.base_models import load_base_model, quiet_transformers

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
