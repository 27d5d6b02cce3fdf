"""TrendClassifier: text encoder + sales encoder + fusion head, saved as a folder of JSON + safetensors.

A batch from `data.TrendCollator` (B records, U distinct texts):
    input_ids, attention_mask (U, L) -> text encoder -> (U, H_t) -> scattered to records by text_index -> (B, H_t)
    sales (B, T, C), summary (B, S)  -> sales encoder -> (B, H_s)
    fusion head -> logits (B, n_classes)
Each distinct text is encoded once, however many records (cutoffs of one product) share it.

The saved folder (DESIGN §4):
    config.json          TrendConfig, label order and rule, feature scaling, base model reference, versions
    README.md            model card (model/card.py)
    adapter/             peft LoRA adapter (adapter_config.json + adapter_model.safetensors)  [finetune=lora]
    encoder/             the whole fine-tuned encoder (safetensors)       [finetune=full, or self_contained=True:
                         LoRA merged; config.json "self_contained" says so and loading reads it, not the base]
    tokenizer/           tokenizer files
    model.safetensors    sales encoder, fusion head, empty-text embedding, scaling buffers, logit offsets
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trendnlp.config import TrendConfig
from trendnlp.data.collate import TrendCollator
from trendnlp.data.features import SUMMARY_NAMES, build_text, n_sales_channels, sales_channel_names, summary_stats
from trendnlp.errors import ModelFolderError
from trendnlp.model.card import write_model_card
from trendnlp.model.folder import (CONFIG_NAME, WEIGHTS_NAME, atomic_folder, check_files, check_tokenizer,
                                   check_weights, read_meta, record_identity, resolve_stored_path)
from trendnlp.model.fusion import FusionHead
from trendnlp.data.records import ErrorReport, read_records_aligned
from trendnlp.model.sales_encoder import SalesEncoder
from trendnlp.model.text_encoder import BaseModelError, TextEncoder, load_base_model, load_tokenizer

FORMAT_VERSION = 1
_ENCODER_PREFIX = "text_encoder."  # weights saved by peft (adapter/) or transformers (encoder/), not in model.safetensors


class TrendClassifier(nn.Module):
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

    @property
    def labels(self) -> list[str]:
        """Class names in the order of logits and probability columns."""
        return list(self.config.labels.names)

    # ---- forward -----------------------------------------------------------------------------
    def _text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, text_index: torch.Tensor):
        """(B, H_t) per-record text vectors, plus (B, 1 + L, H_t) tokens and (B, 1 + L) mask for cross attention."""
        B, U = text_index.shape[0], input_ids.shape[0]
        has_text = (text_index >= 0).unsqueeze(1)  # (B, 1)
        drop = self.config.text.modality_dropout
        if self.training and drop > 0:  # modality dropout: these records train as if they had no text
            has_text = has_text & (torch.rand(B, 1, device=text_index.device) >= drop)
        idx = text_index.clamp(min=0)
        pooled = None
        if U:
            states, mask = self.text_encoder.forward_tokens(input_ids, attention_mask)  # (U, L, H), (U, L)
            pooled = self.text_encoder.pool(states, mask)  # (U, H)
        text = self.record_texts(pooled, text_index, has_text)
        if not self.fusion.needs_tokens:
            return text, None, None
        tokens = self.null_token.expand(B, 1, -1)  # (B, 1, H)
        token_mask = torch.ones(B, 1, dtype=torch.bool, device=text_index.device)
        if U:
            tokens = torch.cat([tokens.to(states.dtype), states[idx]], dim=1)  # (B, 1 + L, H)
            token_mask = torch.cat([token_mask, mask[idx].bool() & has_text], dim=1)  # (B, 1 + L)
        return text, tokens, token_mask

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
        of an Arrow build's texts, from data.arrow.tokenize_texts with this model's tokenizer)."""
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
        stats = [summary_stats(np.asarray(s, dtype=np.float64)[-c.sales.history:], c.sales.history, c.labels.K,
                               c.labels.alpha) for s in series]
        if not stats:
            raise ValueError("fit_feature_scaling: no records; pass the training records")
        self.sales_encoder.fit_summary_scaler(np.stack(stats))
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
    def save_pretrained(self, directory: str | Path, self_contained: bool = False) -> None:
        """Write the model folder (see module docstring): JSON + safetensors only, plus the README.md model card.

        Args:
            directory: target folder (created if needed).
            self_contained: also store the encoder with LoRA merged under `encoder/` (recorded in config.json),
                so the folder loads on a machine without the base model.

        >>> clf.save_pretrained("dist/model", self_contained=True)  # doctest: +SKIP
        """
        from safetensors.torch import save_file

        with atomic_folder(directory) as d:  # a crash mid-save leaves the previous model (or none), never half
            self._write_folder(d, save_file, self_contained)
            record_identity(d, self)  # files list, vocabulary size, base encoder fingerprint into config.json

    def _write_folder(self, d: Path, save_file, self_contained: bool) -> None:
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
                "versions": _versions(),
                # also in model.safetensors (what loading reads); here for people reading the folder
                "calibration": {"logit_bias": self.logit_bias.tolist(), "temperature": float(self.temperature)}}
        if self_contained and self.text_encoder is not None:
            # the original reference stays in config.text.base_model; loading reads encoder/ instead
            meta["self_contained"] = {"encoder": "encoder", "base_model": c.text.base_model}
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
        write_model_card(d)

    @classmethod
    def from_pretrained(cls, directory: str | Path, base_model: str | None = None, merge_lora: bool = True,
                        device: str | torch.device | None = None, backend: str = "torch") -> "TrendClassifier":
        """Rebuild a saved model; never unpickles, never runs remote code.

        Args:
            directory: a folder written by `save_pretrained`.
            base_model: override the stored base encoder reference (name or path), e.g. on another machine.
            merge_lora: fold LoRA into the encoder weights for faster inference (then it cannot be re-saved).
            device: where to put the model (default: CPU).
            backend: "torch", or "onnx" / "onnx-int8" to run the graphs of `trendnlp export --format onnx [--int8]`
                with onnxruntime (an `OnnxTrendClassifier` with the same predict / predict_proba).
        Returns:
            the model in eval mode.

        >>> clf = TrendClassifier.from_pretrained("runs/demo/model", backend="onnx-int8")  # doctest: +SKIP
        """
        from safetensors.torch import load_file

        if backend != "torch":
            from trendnlp.model.onnx_backend import BACKENDS, OnnxTrendClassifier

            if backend not in BACKENDS:
                raise ValueError(f"backend must be one of {list(BACKENDS)}, found {backend!r}")
            return OnnxTrendClassifier(directory, backend)
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
        check_files(d, config, meta)
        stored = config.text.base_model
        config.text.base_model = base_model if base_model is not None else resolve_stored_path(d, stored)
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
            _warn_other_base(d, meta, stored, config.text.base_model, model.text_encoder.base_fingerprint)
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
        return model.to(device or "cpu").eval()

    # ---- inference ---------------------------------------------------------------------------
    def predict_proba(self, records: Any, batch_size: int = 64, on_error: str = "raise",
                      report: ErrorReport | None = None, as_frame: bool = False) -> Any:
        """Class probabilities, columns in `self.labels` order.

        Args:
            records: one record dict, a list of dicts, a pandas DataFrame or a .jsonl/.csv/.parquet path.
            batch_size: records per forward pass (batches are formed from records of similar text length).
            on_error: "raise" on the first bad record (RecordError naming row and field), or "skip" it.
            report: an `ErrorReport` that receives each skipped record's row, field and reason.
            as_frame: return a pandas DataFrame with one column per label, indexed like `records` (a
                DataFrame's own index; 0..n-1 otherwise).
        Returns:
            (n, n_classes) float32 array, one row per input record in input order, summing to 1; a record
            skipped under on_error="skip" keeps its row, filled with NaN (see `report` for why). No records
            give shape (0, n_classes).

        >>> cfg = TrendConfig.from_dict({"text": {"enabled": False}, "sales": {"hidden_size": 8}})
        >>> clf = TrendClassifier(cfg)  # sales-only, untrained: probabilities are not meaningful yet
        >>> proba = clf.predict_proba([{"product_id": "mug", "sales": [3, 4, 8, 12]},
        ...                            {"product_id": "cap", "sales": [0]}])
        >>> proba.shape, bool(np.allclose(proba.sum(1), 1.0)), clf.labels
        ((2, 3), True, ['rising', 'falling', 'stable'])
        >>> clf.predict_proba([]).shape
        (0, 3)
        """
        proba = self._batched(records, batch_size, on_error, report, len(self.labels),
                              lambda o: torch.softmax(o["logits"].float(), dim=-1))
        return proba_frame(proba, records, self.labels) if as_frame else proba

    def predict_change(self, records: Any, batch_size: int = 64, on_error: str = "raise",
                       report: ErrorReport | None = None) -> np.ndarray:
        """`expected_change`: the regression head's estimate of the label rule's change (log ratio of the future
        to the recent mean), one per record; needs a model trained with fusion.change_head=true.

        Args:
            records, batch_size, on_error, report: as `predict_proba`.
        Returns:
            (n,) float32 array, one value per input record in input order (NaN for a skipped record).

        >>> cfg = TrendConfig.from_dict({"text": {"enabled": False}, "fusion": {"change_head": True}})
        >>> TrendClassifier(cfg).predict_change([{"product_id": "a", "sales": [1, 2]}]).shape
        (1,)
        """
        if self.fusion.change_head is None:
            raise ValueError("this model has no change head; train it with --set fusion.change_head=true")
        return self._batched(records, batch_size, on_error, report, 1, lambda o: o["change"].float()[:, None])[:, 0]

    def _batched(self, records: Any, batch_size: int, on_error: str, report: ErrorReport | None, width: int,
                 take) -> np.ndarray:
        """(n, width) float32: `take(forward outputs)` per length-sorted batch, in eval mode, one row per input
        record (NaN for a skipped one); the one inference loop of predict_proba and predict_change."""
        out, batches, align = length_sorted_batches(self, records, batch_size, on_error, report, width)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for idx, batch in batches:
                    batch.pop("labels", None)
                    batch.pop("change_target", None)  # targets are for training losses, not inference
                    out[idx] = take(self(**{k: v.to(device) for k, v in batch.items()})).cpu().numpy()
        finally:
            self.train(was_training)
        return align(out)

    def predict(self, records: Any, batch_size: int = 64, on_error: str = "raise",
                report: ErrorReport | None = None) -> list[str | None]:
        """Most probable label per input record (arguments as `predict_proba`); None for a skipped record.

        >>> clf = TrendClassifier(TrendConfig.from_dict({"text": {"enabled": False}}))
        >>> clf.predict({"product_id": "a", "sales": [1]})[0] in clf.labels
        True
        """
        proba = self.predict_proba(records, batch_size=batch_size, on_error=on_error, report=report)
        ok = ~np.isnan(proba).any(axis=1)
        return [self.labels[i] if good else None for i, good in zip(np.nan_to_num(proba).argmax(axis=1), ok)]

    def explain(self, records: Any, **kwargs) -> list[dict]:
        """One JSON-ready explanation per record: label, probabilities, text vs sales Shapley split, sales
        saliency per period, top words, most influential review (see `trendnlp.model.explain.explain`).

        >>> clf = TrendClassifier(TrendConfig.from_dict({"text": {"enabled": False}}))
        >>> clf.explain({"product_id": "a", "sales": [1, 2, 5]})[0]["label"] in clf.labels
        True
        """
        from trendnlp.model.explain import explain  # captum is an optional extra: import on first use

        return explain(self, records, **kwargs)


def proba_frame(proba: np.ndarray, records: Any, labels: list[str]):
    """(n, n_classes) probabilities as a DataFrame, one column per label, indexed like `records` when it is a
    DataFrame (else 0..n-1)."""
    import pandas as pd

    index = records.index if isinstance(records, pd.DataFrame) else None
    return pd.DataFrame(proba, columns=list(labels), index=index)


def _warn_other_base(d: Path, meta: dict, stored: str, used: str, fingerprint: str) -> None:
    saved = meta.get("base_fingerprint")
    if saved and saved != fingerprint:
        warnings.warn(f"{d}: this model was trained on the base encoder {stored!r} (weights fingerprint {saved}), "
                      f"but is being loaded on {used!r} (fingerprint {fingerprint}); its predictions will be "
                      "wrong unless both are the same encoder", UserWarning, stacklevel=3)


def length_sorted_batches(model: Any, records: Any, batch_size: int, on_error: str,
                          report: ErrorReport | None = None, width: int | None = None):
    """A zero (n_valid, width) output (width: n_classes by default), (row indices, collated batch) pairs with records of similar text
    length together (less padding), and `align(out)`: one row per input record, NaN for a record skipped under
    on_error="skip" (reported in `report`). Shared by the torch and the ONNX predict_proba."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, found {batch_size}")
    c = model.config
    recs, where, n_rows = read_records_aligned(records, on_error=on_error, history=c.sales.history,
                                               rule=c.labels.rule(), report=report)
    out = np.zeros((len(recs), width or len(model.labels)), dtype=np.float32)
    collate = model.make_collator()
    lengths = [len(build_text(r, c.text)) if c.text.enabled else 0 for r in recs]
    order = np.argsort(lengths, kind="stable")
    batches = ((order[s:s + batch_size], collate([recs[i] for i in order[s:s + batch_size]]))
               for s in range(0, len(order), batch_size))

    def align(values: np.ndarray) -> np.ndarray:
        aligned = np.full((n_rows, values.shape[1]), np.nan, dtype=np.float32)  # skipped records stay NaN
        aligned[where] = values
        return aligned

    return out, batches, align


def _versions() -> dict:
    out = {}
    for pkg in ("trendnlp", "torch", "transformers", "peft", "safetensors"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
