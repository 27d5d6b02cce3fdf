"""TrendClassifier: text encoder + sales encoder + fusion head, saved as a folder of JSON + safetensors.

A batch from `data.TrendCollator` (B records, U distinct texts):
    input_ids, attention_mask (U, L) -> text encoder -> (U, H_t) -> scattered to records by text_index -> (B, H_t)
    sales (B, T, C), summary (B, S)  -> sales encoder -> (B, H_s)
    fusion head -> logits (B, n_classes)
Each distinct text is encoded once, however many records (cutoffs of one product) share it.

The saved folder (docs/guide.md, the saved model folder):
    config.json          TrendConfig, label order and rule, feature scaling, base model reference, versions
    README.md            model card (model/card.py)
    adapter/             peft LoRA adapter (adapter_config.json + adapter_model.safetensors)  [finetune=lora]
    encoder/             the whole fine-tuned encoder (safetensors)       [finetune=full, or self_contained=True:
                         LoRA merged; config.json "self_contained" says so and loading reads it, not the base]
    tokenizer/           tokenizer files
    model.safetensors    sales encoder, fusion head, empty-text embedding, scaling buffers, logit offsets
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trendnlp.config import TrendConfig
from trendnlp.data.inputs.collate import TrendCollator
from trendnlp.data.record_files.io import write_json
from trendnlp.data.inputs.features import n_sales_channels, sales_channel_names
from trendnlp.data.inputs.sales_stats import SUMMARY_NAMES, summary_stats_many
from trendnlp.errors import ModelFolderError
from trendnlp.model.base_models import BaseModelError, load_base_model, load_tokenizer
from trendnlp.model.card import write_model_card
from trendnlp.model.folder import (CONFIG_NAME, WEIGHTS_NAME, atomic_folder, check_files, check_tokenizer,
                                   check_weights, library_versions, read_meta, record_identity,
                                   resolve_stored_path, warn_other_base)
from trendnlp.model.fusion import FusionHead
from trendnlp.model.hybrid import BoostingTrendClassifier, load_blend
from trendnlp.model.predict import Runtime
from trendnlp.model.sales_encoder import SalesEncoder
from trendnlp.model.text_encoder import TextEncoder

FORMAT_VERSION = 1
_ENCODER_PREFIX = "text_encoder."  # weights saved by peft (adapter/) or transformers (encoder/), not in model.safetensors


class TrendClassifier(Runtime, nn.Module):
    """Predicts rising / falling / stable sales from product text and sales history.

    Args:
        config: the full TrendConfig (each part goes to its module).
        base_model: an already loaded BERT-family `PreTrainedModel`; None loads `config.text.base_model`.
        tokenizer: its tokenizer; None loads the one of `config.text.base_model`.
    """

    def __init__(self, config: TrendConfig, base_model: nn.Module | None = None, tokenizer: Any = None):
        super().__init__()
        self.config = config
        self.text_encoder = self.sales_encoder = self.tokenizer = None
        text_dim = sales_dim = None
        if config.text.enabled:
            self.text_encoder = TextEncoder(config.text, base=base_model)
            self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.text.base_model)
            text_dim = self.text_encoder.output_dim
            # records without text (text_index == -1) get this learned vector instead of a pooled encoding
            self.empty_text = nn.Parameter(torch.randn(text_dim) * 0.02)
        if config.sales.enabled:
            self.sales_encoder = SalesEncoder(config.sales, len(SUMMARY_NAMES), n_sales_channels(config.sales))
            sales_dim = self.sales_encoder.output_dim
        self.fusion = FusionHead(config.fusion, text_dim, sales_dim, n_classes=len(config.labels.names))
        if self.fusion.needs_tokens:
            # a learned key every record can attend to: the only one for records without text, and a
            # "nothing relevant here" sink for the others (also keeps softmax defined for all rows)
            self.null_token = nn.Parameter(torch.randn(1, 1, text_dim) * 0.02)
        # per-class offsets added to the logits at inference (eval mode) only: zero unless fitted on validation
        # after training (train.calibrate_bias, see calibration.py)
        self.register_buffer("logit_bias", torch.zeros(len(config.labels.names)))
        # temperature dividing the offset logits at inference (eval mode) only: 1 unless fitted on validation
        # after training and the offsets (train.calibrate_temperature, see calibration.py)
        self.register_buffer("temperature", torch.ones(()))

    # ---- forward -----------------------------------------------------------------------------
    def _text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, text_index: torch.Tensor):
        """(B, H_t) per-record text vectors, plus (B, 1 + L, H_t) tokens and (B, 1 + L) mask for cross attention."""
        B, U = text_index.shape[0], input_ids.shape[0]
        has_text = (text_index >= 0).unsqueeze(1)  # (B, 1)
        drop = self.config.text.modality_dropout
        if self.training and drop > 0:  # modality dropout: these records train as if they had no text
            has_text = has_text & (torch.rand(B, 1, device=text_index.device) >= drop)
        pooled = states = mask = None
        if U and not self.fusion.needs_tokens:
            pooled = self.text_encoder(input_ids, attention_mask)  # (U, H); a frozen encoder's from its cache
        elif U:
            states, mask = self.text_encoder.forward_tokens(input_ids, attention_mask)  # (U, L, H), (U, L)
            pooled = self.text_encoder.pool(states, mask)  # (U, H)
        text = self.record_texts(pooled, text_index, has_text)
        if not self.fusion.needs_tokens:
            return text, None, None
        return (text, *self.record_tokens(states, mask, text_index, has_text))

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                text_index: torch.Tensor | None = None, sales: torch.Tensor | None = None,
                summary: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                change_target: torch.Tensor | None = None) -> dict:
        """Logits for a collated batch (keys as produced by `make_collator()`).

        Returns:
            {"logits": (B, n_classes), "loss": plain cross-entropy when `labels` is given, else None,
             "change": (B,) expected change with fusion.change_head (else None), "change_loss": its Huber loss
             against `change_target` when given (else None)}
        """
        text = tokens = token_mask = None
        if self.text_encoder is not None:
            text, tokens, token_mask = self._text(input_ids, attention_mask, text_index)
        sales_vec = self.sales_encoder(sales, summary) if self.sales_encoder is not None else None
        logits = self.head(text, sales_vec, tokens, token_mask)
        change = change_loss = None
        if self.fusion.change_head is not None:  # a second pass through the (small) fusion MLP only
            change = self.fusion.expected_change(text, sales_vec, tokens, token_mask)
            if change_target is not None:
                change_loss = F.smooth_l1_loss(change.float(), change_target.float())
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return {"logits": logits, "loss": loss, "change": change, "change_loss": change_loss}

    def record_texts(self, pooled: torch.Tensor | None, text_index: torch.Tensor,
                     has_text: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H_t) per-record text vectors: row `text_index` of the pooled distinct texts (U, H_t), or the learned
        empty-text vector where the record has no text (index -1, or has_text (B, 1) False)."""
        if pooled is None or pooled.shape[0] == 0:  # shape, not len(): keeps the text axis symbolic in ONNX export
            return self.empty_text.unsqueeze(0).expand(len(text_index), -1)
        if has_text is None:
            has_text = (text_index >= 0).unsqueeze(1)
        return torch.where(has_text, pooled[text_index.clamp(min=0)], self.empty_text.to(pooled.dtype))

    def record_tokens(self, states: torch.Tensor | None, mask: torch.Tensor | None, text_index: torch.Tensor,
                      has_text: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross attention's keys per record: the learned null token, then the token states (U, L, H_t) of the
        record's text, masked by `mask` (U, L) and where it has none (index -1, or has_text (B, 1) False).
        Returns tokens (B, 1 + L, H_t) and their mask (B, 1 + L); only the null token when states is None."""
        B = text_index.shape[0]
        tokens = self.null_token.expand(B, 1, -1)  # (B, 1, H)
        token_mask = torch.ones(B, 1, dtype=torch.bool, device=text_index.device)
        if states is None:
            return tokens, token_mask
        if has_text is None:
            has_text = (text_index >= 0).unsqueeze(1)
        idx = text_index.clamp(min=0)
        tokens = torch.cat([tokens.to(states.dtype), states[idx]], dim=1)  # (B, 1 + L, H)
        return tokens, torch.cat([token_mask, mask[idx].bool() & has_text], dim=1)  # (B, 1 + L)

    def head(self, text: torch.Tensor | None, sales_vec: torch.Tensor | None, tokens: torch.Tensor | None = None,
             token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fusion head logits (B, n_classes) from encoded inputs; in eval mode (logits + `logit_bias`) / `temperature`."""
        logits = self.fusion(text, sales_vec, tokens, token_mask)
        if self.training:
            return logits
        return (logits + self.logit_bias.to(logits.dtype)) / self.temperature.to(logits.dtype)

    # ---- training helpers --------------------------------------------------------------------
    def make_collator(self, dedup: bool = True, pad_to_max_length: bool = False, tokens=None) -> TrendCollator:
        """The collator that turns normalised records into this model's batches (`tokens`: the stored token ids
        of an Arrow build's texts, from data.inputs.arrow_texts.tokenize_texts with this model's tokenizer)."""
        c = self.config
        return TrendCollator(self.tokenizer, c.text, c.sales, self.labels, K=c.labels.K, alpha=c.labels.alpha,
                             dedup=dedup, pad_to_max_length=pad_to_max_length,
                             change_rule=c.labels.rule() if c.fusion.change_head else None, tokens=tokens)

    def fit_feature_scaling(self, records) -> "TrendClassifier":
        """Fit the summary-statistics standardisation on training records (call once, before training).

        Args:
            records: normalised training records (list of dicts or a `datasets.Dataset`).
        Returns:
            self
        """
        if self.sales_encoder is None:
            return self
        c = self.config
        series = records["sales"] if hasattr(records, "column_names") else (r["sales"] for r in records)
        stats = summary_stats_many(list(series), c.sales.history, c.labels.K, c.labels.alpha)
        if not len(stats):
            raise ValueError("fit_feature_scaling: no records; pass the training records")
        self.sales_encoder.fit_summary_scaler(stats)
        return self

    def param_groups(self, lr: float, encoder_lr: float, weight_decay: float) -> list[dict]:
        """AdamW parameter groups: encoder trainables at `encoder_lr`, the rest at `lr`; no decay on biases/norms.

        Returns:
            a list of {"name", "params", "lr", "weight_decay"} dicts (empty groups left out).
        """
        groups: dict[tuple[bool, bool], list] = {}
        for name, p in self.named_parameters():
            if p.requires_grad:
                decay = p.ndim >= 2 and "norm" not in name.lower() and name != "null_token"
                groups.setdefault((name.startswith(_ENCODER_PREFIX), decay), []).append(p)
        return [{"name": f"{'encoder' if enc else 'head'}{'' if decay else '_no_decay'}", "params": ps,
                 "lr": encoder_lr if enc else lr, "weight_decay": weight_decay if decay else 0.0}
                for (enc, decay), ps in sorted(groups.items(), reverse=True)]

    def trainable_parameter_report(self) -> dict:
        """{"trainable": int, "total": int, "percent": float} over all parameters."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / max(total, 1)}

    # ---- save / load -------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, self_contained: bool = False, metrics: dict | None = None) -> None:
        """Write the model folder (see module docstring): JSON + safetensors only, plus the README.md model card.

        Args:
            directory: target folder (created if needed).
            self_contained: also store the encoder with LoRA merged under `encoder/` (recorded in config.json),
                so the folder loads on a machine without the base model.
            metrics: written as metrics.json (training: best epoch, validation and test metrics) and shown on the
                model card.

        >>> clf.save_pretrained("dist/model", self_contained=True)  # doctest: +SKIP
        """
        from safetensors.torch import save_file

        with atomic_folder(directory) as d:  # a crash mid-save leaves the previous model (or none), never half
            self._write_folder(d, save_file, self_contained, metrics)
            record_identity(d, self)  # files list, vocabulary size, base encoder fingerprint into config.json

    def _write_folder(self, d: Path, save_file, self_contained: bool, metrics: dict | None) -> None:
        c = self.config
        stored = c.to_dict()
        if c.text.enabled and not Path(c.text.base_model).is_absolute() and Path(c.text.base_model).exists():
            # a path relative to today's working directory would break tomorrow: store it absolute
            stored["text"]["base_model"] = str(Path(c.text.base_model).resolve())
        meta = {"format": "trendnlp", "format_version": FORMAT_VERSION, "config": stored,
                "labels": self.labels, "label_rule": dataclasses.asdict(c.labels.rule()),
                "base_model": c.text.base_model if c.text.enabled else None,
                "feature_scaling": ({"summary_names": list(SUMMARY_NAMES), **self.sales_encoder.scaling_stats()}
                                    if self.sales_encoder is not None else None),
                "n_sales_channels": n_sales_channels(c.sales), "sales_channels": sales_channel_names(c.sales),
                "versions": library_versions("trendnlp", "torch", "transformers", "peft", "safetensors", "lightgbm"),
                # also in model.safetensors (what loading reads); here for people reading the folder
                "calibration": {"logit_bias": self.logit_bias.tolist(), "temperature": float(self.temperature)}}
        if self_contained and self.text_encoder is not None:
            # the original reference stays in config.text.base_model; loading reads encoder/ instead
            meta["self_contained"] = {"encoder": "encoder", "base_model": c.text.base_model}
        if self.blend is not None:  # a hybrid: the boosting branch in boosting/, the blend in config.json
            self.blend.save(d)
            meta["hybrid"] = self.blend.meta()
        (d / CONFIG_NAME).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if self.text_encoder is not None:
            if c.text.finetune != "lora" or self.text_encoder.is_peft or not self_contained:
                self.text_encoder.save(d)  # adapter/ (LoRA; refused once merged) or encoder/ (full)
            if self_contained:
                self.text_encoder.save_merged(d / "encoder")
            self.tokenizer.save_pretrained(str(d / "tokenizer"))
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()
                 if not k.startswith(_ENCODER_PREFIX)}
        save_file(state, str(d / WEIGHTS_NAME), metadata={"format": "pt"})
        if metrics is not None:
            write_json(d / "metrics.json", metrics)
        write_model_card(d)

    @classmethod
    def from_pretrained(cls, directory: str | Path, base_model: str | None = None, merge_lora: bool = True,
                        device: str | torch.device | None = None) -> "TrendClassifier":
        """Rebuild a saved model; never unpickles, never runs remote code.

        Args:
            directory: a folder written by `save_pretrained`.
            base_model: override the stored base encoder reference (name or path), e.g. on another machine.
            merge_lora: fold LoRA into the encoder weights for faster inference (then it cannot be re-saved).
            device: where to put the model (default: CPU).
        Returns:
            the model in eval mode (`trendnlp.load_model(dir, backend="onnx")` gives the same API on onnxruntime);
            a hybrid folder's model predicts the blend (`blend` holds the boosting branch), a model.kind=boosting
            folder gives a `BoostingTrendClassifier` with the same prediction API.

        >>> clf = TrendClassifier.from_pretrained("runs/demo/model")  # doctest: +SKIP
        """
        from safetensors.torch import load_file

        d = Path(directory)
        meta = read_meta(d)
        if meta.get("format") != "trendnlp" or not isinstance(meta.get("format_version"), int) or \
                meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{d / CONFIG_NAME}: expected trendnlp format_version <= {FORMAT_VERSION}, found "
                             f"{meta.get('format')!r} version {meta.get('format_version')!r}; upgrade trendnlp")
        try:
            config = TrendConfig.from_dict(meta["config"], source=str(d / CONFIG_NAME))
        except ValueError as e:
            raise ModelFolderError(f"{e} (the model folder's config.json is damaged or from another version)") from None
        stored = config.text.base_model
        config.text.base_model = base_model if base_model is not None else resolve_stored_path(d, stored)
        if (meta.get("hybrid") or {}).get("kind") == "boosting":  # no neural branch: nothing else to load
            return BoostingTrendClassifier(config, load_blend(d, meta, config.text.base_model))
        check_files(d, config, meta)
        frozen_base = config.text.base_model  # the boosting branch's text PCA embeds with it (no LoRA)
        base = tokenizer = None
        # self-contained: encoder/ holds the merged encoder; an explicit base_model still selects base + adapter
        merged = bool(meta.get("self_contained")) and base_model is None and config.text.enabled
        if config.text.enabled:
            try:
                tokenizer = load_tokenizer(str(d / "tokenizer"))
            except BaseModelError as e:  # the folder's own files, not a base-model reference: say so
                raise ModelFolderError(f"{d / 'tokenizer'}: the model folder's tokenizer files are unreadable "
                                       f"({' '.join(str(e.__cause__ or e).split())[:160]}); export the model again "
                                       "or restore the folder") from None
            check_tokenizer(d, tokenizer, meta)
            full = config.text.finetune == "full"
            base = load_base_model(str(d / "encoder"), use_safetensors=True) if full or merged else \
                load_base_model(config.text.base_model)
        if merged and config.text.finetune == "lora":
            # a fresh LoRA (B = 0, a no-op) wraps the merged weights; the merged encoder is now the base
            config.text.base_model = str((d / "encoder").resolve())
        model = cls(config, base_model=base, tokenizer=tokenizer)
        if config.text.enabled and config.text.finetune != "full" and not merged:
            warn_other_base(d, meta, stored, config.text.base_model, model.text_encoder.base_fingerprint)
        if config.text.enabled and config.text.finetune == "lora" and not merged:
            model.text_encoder.load_adapter_weights(d / "adapter")
        check_weights(d / WEIGHTS_NAME, model.state_dict())  # readable, and shaped as config.json says
        result = model.load_state_dict(load_file(str(d / WEIGHTS_NAME)), strict=False)
        # folders saved before logit_bias / temperature existed have none: zero offsets and T = 1, as trained
        missing = [k for k in result.missing_keys if not k.startswith(_ENCODER_PREFIX)
                   and k not in ("logit_bias", "temperature")]
        if missing or result.unexpected_keys:
            raise ValueError(f"{d / WEIGHTS_NAME}: weights do not match config.json (missing {missing[:5]}, "
                             f"unexpected {result.unexpected_keys[:5]})")
        if merge_lora and model.text_encoder is not None:
            model.text_encoder.merge_lora()
        model.blend = load_blend(d, meta, frozen_base)  # None for a neural model (and every older folder)
        return model.to(device or "cpu").eval()

    # ---- the prediction primitives (model/predict.py runs every prediction through them) -------
    @property
    def device(self) -> torch.device:
        """Where the model's weights live."""
        return next(self.parameters()).device

    @property
    def text_dim(self) -> int:
        """Width of a pooled text (0 without text)."""
        return self.text_encoder.output_dim if self.text_encoder is not None else 0

    @property
    def has_change(self) -> bool:
        """Whether the model estimates `expected_change` (fusion.change_head)."""
        return self.fusion.change_head is not None

    @contextlib.contextmanager
    def inference(self):
        """Eval mode (no dropout; logit offsets and temperature applied), the previous mode restored after."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled texts (U, H) of token batches (U, L)."""
        return self.text_encoder(input_ids=input_ids, attention_mask=attention_mask)

    def head_outputs(self, pooled: torch.Tensor | None, text_index: torch.Tensor, sales: dict):
        """Probabilities (B, C) and expected change (B,) or None of records whose texts are rows `text_index`
        of `pooled` (-1: none); `sales` holds "sales" (B, T, C) and "summary" (B, S) (empty without sales)."""
        text = self.record_texts(pooled, text_index) if self.text_encoder is not None else None
        sales_vec = self.sales_encoder(**sales) if self.sales_encoder is not None else None
        logits = self.head(text, sales_vec)
        change = self.fusion.expected_change(text, sales_vec) if self.has_change else None
        return torch.softmax(logits.float(), dim=-1), change

    def batch_outputs(self, batch: dict):
        """Probabilities (B, C) and expected change (B,) or None of a collated batch through `forward`."""
        out = self(**{k: v for k, v in batch.items() if k not in ("labels", "change_target")})
        return torch.softmax(out["logits"].float(), dim=-1), out["change"]

    def explain(self, records: Any, **kwargs) -> list[dict]:
        """One JSON-ready explanation per record: label, probabilities, text vs sales Shapley split, sales
        saliency per period, top words, most influential review (see `trendnlp.model.explain.explain`).

        >>> clf = TrendClassifier(TrendConfig.from_dict({"text": {"enabled": False}}))
        >>> clf.explain({"product_id": "a", "sales": [1, 2, 5]})[0]["label"] in clf.labels
        True
        """
        from trendnlp.model.explain import explain  # captum is an optional extra: import on first use

        return explain(self, records, **kwargs)
