"""Batches: tokenization with per-batch text dedup, sales tensors and labels.

A batch (B records, U distinct non-empty texts among them):
    input_ids, attention_mask   (U, L)  each distinct text once, dynamically padded
    text_index                  (B,)    row of each record's text in input_ids; -1 for records without text
    sales                       (B, T, C) per-period channels (features.py)
    summary                     (B, S)  summary statistics
    labels                      (B,)    class indices in label order (only when every record has a label)
    change_target               (B,)    the label rule's change (only with `change_rule` and when every record
                                        has future_sales): the target of the optional regression head
With `tokens` (the token ids of each distinct text of an Arrow build, data.inputs.arrow_texts.tokenize_texts), records carry
a `text_code` and the collator pads their stored ids instead of composing and tokenizing the texts again.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from trendnlp.config import SalesConfig, TextConfig
from trendnlp.data.inputs.features import build_text, sales_channels
from trendnlp.data.inputs.sales_stats import summary_stats_many


class TrendCollator:
    """Turns a list of normalised records into model tensors (see module docstring).

    Args:
        tokenizer: a Hugging Face tokenizer (None when text is disabled).
        text_cfg, sales_cfg: the model's config parts.
        label_names: class order for `labels`.
        K, alpha: label-rule parameters reused by the summary statistics.
        dedup: encode each distinct text of the batch once (records of one product share text across cutoffs).
        pad_to_max_length: pad every text to max_length (only for the naive baseline in benchmarks).
        change_rule: a LabelRule: add change_target for the regression head.
        tokens: rows {"input_ids": [...]} indexed by the records' `text_code` (None: tokenize per batch).
    """

    def __init__(self, tokenizer, text_cfg: TextConfig, sales_cfg: SalesConfig, label_names: Sequence[str],
                 K: int = 4, alpha: float = 1.0, dedup: bool = True, pad_to_max_length: bool = False,
                 change_rule=None, tokens=None):
        self.change_rule, self.tokens = change_rule, tokens
        self.tokenizer, self.text_cfg, self.sales_cfg = tokenizer, text_cfg, sales_cfg
        self.label_to_id = {n: i for i, n in enumerate(label_names)}
        self.K, self.alpha, self.dedup, self.pad_to_max_length = K, alpha, dedup, pad_to_max_length

    def texts(self, records: Sequence[dict]) -> tuple[list[str], list[int]]:
        """Distinct non-empty texts and each record's index into them (-1: no text)."""
        return distinct_index([build_text(r, self.text_cfg) or None for r in records], self.dedup)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """input_ids and attention_mask (U, L) of distinct texts, padded to the longest (or to max_length)."""
        if not texts:
            return _no_tokens()
        return pad_token_ids(token_ids(self.tokenizer, texts, self.text_cfg.max_length), self.tokenizer.pad_token_id,
                             width=self.text_cfg.max_length if self.pad_to_max_length else None,
                             left=self.tokenizer.padding_side == "left")

    def stored_tokens(self, records: Sequence[dict]) -> tuple[dict[str, torch.Tensor], list[int]]:
        """`tokenize(texts(records))` from the stored token ids: the distinct codes' rows, padded alike."""
        codes, index = distinct_index([r["text_code"] if r["text_code"] >= 0 else None for r in records], self.dedup)
        if not codes:
            return _no_tokens(), index
        rows = [row["input_ids"] for row in self.tokens.__getitems__(codes)]
        return pad_token_ids(rows, self.tokenizer.pad_token_id,
                             width=self.text_cfg.max_length if self.pad_to_max_length else None,
                             left=self.tokenizer.padding_side == "left"), index

    def sales(self, records: Sequence[dict]) -> dict[str, torch.Tensor]:
        """sales (B, T, C) per record and summary (B, S) of the whole batch in one call."""
        T = self.sales_cfg.history
        return {"sales": torch.from_numpy(np.stack([sales_channels(r, self.sales_cfg) for r in records])),
                "summary": torch.from_numpy(summary_stats_many([r["sales"][-T:] for r in records], T, self.K,
                                                               self.alpha))}

    def __call__(self, records: Sequence[dict]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        if self.text_cfg.enabled and self.tokens is not None and records and "text_code" in records[0]:
            tokens, index = self.stored_tokens(records)
            batch.update(tokens)
            batch["text_index"] = torch.tensor(index, dtype=torch.long)
        elif self.text_cfg.enabled:
            texts, index = self.texts(records)
            batch.update(self.tokenize(texts))
            batch["text_index"] = torch.tensor(index, dtype=torch.long)
        if self.sales_cfg.enabled:
            batch.update(self.sales(records))
        labels = [r.get("label") for r in records]
        if labels and all(lab is not None for lab in labels):
            batch["labels"] = torch.tensor([self.label_to_id[lab] for lab in labels], dtype=torch.long)
        if self.change_rule is not None and records and all(r.get("future_sales") for r in records):
            batch["change_target"] = torch.tensor([self.change_rule.change(r["sales"], r["future_sales"])
                                                   for r in records], dtype=torch.float32)
        return batch


def distinct_index(keys: Sequence, dedup: bool = True) -> tuple[list, list[int]]:
    """The distinct keys other than None in first-seen order (every one when not `dedup`) and each key's row
    among them, -1 for None.

    >>> distinct_index(["a", None, "b", "a"])
    (['a', 'b'], [0, -1, 1, 0])
    """
    rows: dict = {}
    out: list = []
    index = []
    for key in keys:
        if key is None:
            index.append(-1)
            continue
        if not dedup or key not in rows:
            rows[key] = len(out)
            out.append(key)
        index.append(rows[key])
    return out, index


def token_ids(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """The one tokenizing function of training batches and prediction: unpadded token ids of each text,
    truncated to max_length (pad them with `pad_token_ids`)."""
    return tokenizer(list(texts), truncation=True, max_length=max_length, return_attention_mask=False,
                     return_token_type_ids=False)["input_ids"]


def pad_token_ids(rows: Sequence[Sequence[int]], pad_id: int, width: int | None = None,
                  left: bool = False) -> dict[str, torch.Tensor]:
    """Unpadded token id lists -> input_ids and attention_mask (len(rows), width), width the longest by default."""
    width = width or max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span], mask[i, span] = torch.as_tensor(row, dtype=torch.long), 1
    return {"input_ids": ids, "attention_mask": mask}


def _no_tokens() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.zeros(0, 1, dtype=torch.long), "attention_mask": torch.zeros(0, 1, dtype=torch.long)}
