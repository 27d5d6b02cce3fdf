"""The one prediction core: every runtime (torch, ONNX fp32, ONNX int8) and every caller (`predict_proba`,
`predict`, `predict_change`, the batch labeler, serve, explain's probabilities) runs through `Predictor`.

    records --validate--> windows of WINDOW records --> distinct texts of a window, tokenized once
    (data.inputs.collate.token_ids), sorted by token length, encoded in dynamically padded batches of up to `batch_size`
    texts of similar lengths (`length_groups`; pooled embeddings also kept in a bounded LRU cache across windows
    when `text_cache` > 0)
    --> scattered to records by text_index --> sales encoder + fusion head in batches of HEAD_BATCH
    --> probabilities (n, C) and, with a change head, expected_change (n,) in the same pass
    --> aligned with the input: a record skipped under on_error="skip" keeps a NaN row

A runtime (`Runtime`) supplies the model and four primitives; everything else here is shared:
    encode(input_ids (U, L), attention_mask (U, L))        -> pooled texts (U, H)
    head_outputs(pooled (U, H) | None, text_index (B,), sales {"sales": (B, T, C), "summary": (B, S)})
                                                           -> probs (B, C), change (B,) | None
    batch_outputs(collated batch)                          -> probs (B, C), change (B,) | None
        (the whole model on one batch: cross attention needs each record's token states, not pooled texts)
    device                                                 where input tensors go
`predict` is derived from `predict_proba`, and both from `predict_outputs`, here and only here.
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from trendnlp.data.record_files.channels import required_channels
from trendnlp.data.inputs.collate import TrendCollator, pad_token_ids, token_ids
from trendnlp.data.record_files.records import read_records_aligned
from trendnlp.data.record_files.io import ErrorReport

HEAD_BATCH = 1024  # records per sales-encoder + fusion-head pass: cheap per record, so batch big
WINDOW = 4096  # records per window in predict_proba: texts are deduplicated over a window
# one more encoder pass costs about as much as this many more padded tokens (MiniLM at one thread: ~5 ms a pass
# besides its tokens, ~0.3 ms a token; docs/serving.md): what `length_groups` trades padding against
PASS_COST_TOKENS = 16


class Predictions(NamedTuple):
    """One pass's outputs, one row per record: probabilities (n, C) in `labels` order, and expected_change
    (n,) when the model has a change head (else None)."""

    probs: np.ndarray
    change: np.ndarray | None


class Runtime:
    """The shared inference API of every runtime; subclasses define `config`, `tokenizer`, `device`,
    `text_dim`, `has_change` and the primitives `encode`, `head_outputs`, `batch_outputs` (module docstring)."""

    config: Any
    tokenizer: Any
    device: torch.device
    text_dim: int = 0  # width H of a pooled text
    has_change: bool = False
    has_neural: bool = True  # False: a boosting-only model (model.kind=boosting)
    blend: Any = None  # model.hybrid.Blend of a hybrid or boosting folder: the boosting branch and the blend

    @property
    def kind(self) -> str:
        """"neural", "hybrid" or "boosting" (model.kind of the loaded folder)."""
        return "neural" if self.blend is None else self.blend.kind

    @property
    def labels(self) -> list[str]:
        """Class names in the order of logits and probability columns."""
        return list(self.config.labels.names)

    @property
    def needs_tokens(self) -> bool:
        """Cross-attention fusion reads token states: texts cannot be pooled apart from the head."""
        return self.config.text.enabled and self.config.fusion.method == "cross_attention"

    def record_rules(self, branch: str | None = None) -> dict:
        """What this model asks of an input record, as keyword arguments of the record readers and validators
        (`read_records`, `validate_rows`, `validate_record`): the longest history, the label rule, and the
        channels its network reads (a record without one is refused, never read as zeros; the boosting branch
        reads a missing channel as missing, so `branch="boosting"` and boosting-only models require none).

        >>> from trendnlp.config import TrendConfig
        >>> from trendnlp.model.classifier import TrendClassifier
        >>> clf = TrendClassifier(TrendConfig.from_dict({"text": {"enabled": False}, "sales": {"history": 8,
        ...                       "hidden_size": 8, "channels": ["orders"]}}))
        >>> rules = clf.record_rules()
        >>> rules["history"], list(rules["required"])
        (8, ['orders'])
        """
        c = self.config
        neural = self.has_neural and branch != "boosting"
        return {"history": c.sales.history, "rule": c.labels.rule(),
                "required": required_channels(c.sales) if neural else {}}

    def inference(self):
        """A context in which the runtime predicts (torch: eval mode, restored afterwards)."""
        return contextlib.nullcontext()

    def predict_outputs(self, records: Any, batch_size: int = 64, on_error: str = "raise",
                        report: ErrorReport | None = None, branch: str | None = None) -> Predictions:
        """Probabilities and expected_change of any records input in one pass (arguments as `predict_proba`)."""
        return Predictor(self, batch_size=batch_size).predict(records, on_error=on_error, report=report,
                                                              branch=branch)

    def predict_proba(self, records: Any, batch_size: int = 64, on_error: str = "raise",
                      report: ErrorReport | None = None, as_frame: bool = False, branch: str | None = None) -> Any:
        """Class probabilities, columns in `self.labels` order.

        Args:
            records: one record dict, a list of dicts, a pandas DataFrame or a .jsonl/.csv/.parquet path.
            batch_size: distinct texts per text-encoder pass (length-sorted, dynamically padded).
            on_error: "raise" on the first bad record (RecordError naming row and field), or "skip" it.
            report: an `ErrorReport` that receives each skipped record's row, field and reason.
            as_frame: return a pandas DataFrame with one column per label, indexed like `records` (a
                DataFrame's own index; 0..n-1 otherwise).
            branch: None for the saved model (a hybrid's blend); "neural" or "boosting" for one branch of a
                hybrid alone (the neural one with its own offsets and temperature, the boosting one raw).
        Returns:
            (n, n_classes) float32 array, one row per input record in input order, summing to 1; a record
            skipped under on_error="skip" keeps its row, filled with NaN (see `report` for why). No records
            give shape (0, n_classes).

        >>> from trendnlp.config import TrendConfig
        >>> from trendnlp.model.classifier import TrendClassifier
        >>> clf = TrendClassifier(TrendConfig.from_dict({"text": {"enabled": False}, "sales": {"hidden_size": 8}}))
        >>> proba = clf.predict_proba([{"product_id": "mug", "sales": [3, 4, 8, 12]},
        ...                            {"product_id": "cap", "sales": [0]}])  # untrained: not meaningful yet
        >>> proba.shape, bool(np.allclose(proba.sum(1), 1.0)), clf.labels
        ((2, 3), True, ['rising', 'falling', 'stable'])
        >>> clf.predict_proba([]).shape
        (0, 3)
        """
        proba = self.predict_outputs(records, batch_size, on_error, report, branch=branch).probs
        return proba_frame(proba, records, self.labels) if as_frame else proba

    def predict(self, records: Any, batch_size: int = 64, on_error: str = "raise",
                report: ErrorReport | None = None, branch: str | None = None) -> list[str | None]:
        """Most probable label per input record (arguments as `predict_proba`); None for a skipped record."""
        return labels_of(self.predict_proba(records, batch_size=batch_size, on_error=on_error, report=report,
                                            branch=branch), self.labels)

    def predict_change(self, records: Any, batch_size: int = 64, on_error: str = "raise",
                       report: ErrorReport | None = None) -> np.ndarray:
        """`expected_change`: the regression head's estimate of the label rule's change (log ratio of the future
        to the recent mean), one per record; needs a model trained with fusion.change_head=true.

        Returns:
            (n,) float32 array, one value per input record in input order (NaN for a skipped record).
        """
        if not self.has_change:
            raise ValueError("this model has no change head; train it with --set fusion.change_head=true")
        return self.predict_outputs(records, batch_size, on_error, report).change


def check_branch(runtime: Runtime, branch: str | None) -> None:
    """`branch` names a branch this model has (None: the saved model)."""
    if branch is None:
        return
    has = [b for b, ok in (("neural", runtime.has_neural), ("boosting", runtime.blend is not None)) if ok]
    if branch not in ("neural", "boosting"):
        raise ValueError(f"branch must be None, 'neural' or 'boosting', found {branch!r}")
    if branch not in has:
        raise ValueError(f"branch={branch!r}: this {runtime.kind} model has no {branch} branch (it has {has}); "
                         "leave branch=None for the saved model")


def labels_of(probs: np.ndarray, labels: list[str]) -> list[str | None]:
    """The most probable label of each row of `probs`; None for a NaN row (a skipped record).

    >>> labels_of(np.array([[0.2, 0.8], [np.nan, np.nan]]), ["up", "down"])
    ['down', None]
    """
    ok = ~np.isnan(probs).any(axis=1)
    return [labels[i] if good else None for i, good in zip(np.nan_to_num(probs).argmax(axis=1), ok)]


class Predictor:
    """Probabilities (and expected_change) for validated records, each distinct text encoded once.

    Pooled text embeddings stay in a bounded LRU cache across calls when `text_cache` > 0: a catalog sorted by
    cutoff meets the same product text again one cutoff (a few thousand rows) later, and a server is asked about
    the same products again and again. Cross-attention needs token states, which are not cached. Safe to call
    from several threads: every read or write of the cache happens under one lock; the encoder runs outside it.

    Args:
        runtime: a `Runtime` (TrendClassifier in eval mode, LoRA merged for speed, or an ONNX runtime).
        batch_size: distinct texts per encoder pass (dynamically padded, length-sorted).
        text_cache: pooled embeddings kept across calls (H floats each; 0: dedup within one call only).
            Only for a model whose weights no longer change.
        dtype: "fp32" or "bf16" autocast (torch only).
    """

    def __init__(self, runtime: Runtime, batch_size: int = 64, text_cache: int = 0, dtype: str = "fp32"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, found {batch_size}")
        self.runtime, self.batch_size, self.cache_size = runtime, batch_size, max(0, text_cache)
        c = runtime.config
        self.collator = TrendCollator(runtime.tokenizer, c.text, c.sales, runtime.labels, K=c.labels.K,
                                      alpha=c.labels.alpha) if runtime.has_neural else None
        self.device = runtime.device
        self.dtype = dtype
        self._slots: OrderedDict[str, int] = OrderedDict()  # text -> row of _table, least recently used first
        self._table: torch.Tensor | None = None
        self.texts_encoded = self.texts_cached = 0
        self._lock = threading.Lock()

    # ---- any input ----------------------------------------------------------------------------
    def predict(self, records: Any, on_error: str = "raise", report: ErrorReport | None = None,
                branch: str | None = None) -> Predictions:
        """Validate any records input, run it window by window, align the outputs with the input rows."""
        check_branch(self.runtime, branch)
        recs, where, n_rows = read_records_aligned(records, on_error=on_error, report=report,
                                                   **self.runtime.record_rules(branch))
        parts = [self(recs[s:s + WINDOW], branch) for s in range(0, len(recs), WINDOW)] or [self([], branch)]
        probs = np.full((n_rows, len(self.runtime.labels)), np.nan, dtype=np.float32)  # skipped rows stay NaN
        probs[where] = np.concatenate([p.probs for p in parts])
        change = None
        if self.runtime.has_change:
            change = np.full(n_rows, np.nan, dtype=np.float32)
            change[where] = np.concatenate([p.change for p in parts])
        return Predictions(probs, change)

    # ---- validated records --------------------------------------------------------------------
    def __call__(self, records: list[dict], branch: str | None = None) -> Predictions:
        """Outputs for validated records (rows in `records` order): the neural branch's, the boosting branch's,
        or (branch None) the saved model's: a hybrid's blend. A hybrid whose blend weight is 0 (validation chose
        the booster alone) skips the neural branch unless it has a change head: 0 * p_neural + p_boosting is
        p_boosting, bit for bit, at a fraction of the cost."""
        rt = self.runtime
        unused = branch is None and rt.blend is not None and rt.blend.weight == 0 and not rt.has_change
        out = self._neural(records) if rt.has_neural and branch != "boosting" and not unused else None
        if rt.blend is None or branch == "neural":
            return out
        p_boost = rt.blend.branch.predict_proba(records).astype(np.float32)
        probs = p_boost if branch == "boosting" else rt.blend.combine(None if out is None else out.probs, p_boost)
        change = out.change if out is not None else (
            np.full(len(records), np.nan, dtype=np.float32) if rt.has_change else None)
        return Predictions(probs.astype(np.float32), change)

    def _neural(self, records: list[dict]) -> Predictions:
        """The neural branch's outputs for validated records, texts deduplicated over all of them."""
        rt, n = self.runtime, len(records)
        probs = np.zeros((n, len(rt.labels)), dtype=np.float32)
        change = np.full(n, np.nan, dtype=np.float32) if rt.has_change else None
        out = Predictions(probs, change)
        if not records:
            return out
        c = rt.config
        sales = self.collator.sales(records) if c.sales.enabled else {}
        texts, index = self.collator.texts(records) if c.text.enabled else ([], [-1] * n)
        index = np.asarray(index, dtype=np.int64)
        with torch.inference_mode(), self._autocast(), rt.inference():
            if rt.needs_tokens:
                self._by_text_group(texts, index, sales, out)
                return out
            pooled = self._encode(texts) if c.text.enabled else None  # (U, H)
            for rows in _chunks(np.arange(n), HEAD_BATCH):
                self._put(out, rows, rt.head_outputs(pooled, self._to(torch.from_numpy(index[rows])),
                                                     {k: self._to(v[rows]) for k, v in sales.items()}))
        return out

    def _autocast(self):
        if self.dtype == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _to(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device)

    @staticmethod
    def _put(out: Predictions, rows: np.ndarray, result: tuple) -> None:
        probs, change = result
        out.probs[rows] = _numpy(probs)
        if out.change is not None and change is not None:
            out.change[rows] = _numpy(change)

    def text_batches(self, texts: list[str]) -> Iterator[tuple[np.ndarray, dict]]:
        """(text positions, padded input_ids / attention_mask on the device) per batch of length-sorted texts."""
        if not texts:
            return
        tok = self.runtime.tokenizer
        ids = token_ids(tok, texts, self.runtime.config.text.max_length)
        for pos in length_groups(np.array([len(x) for x in ids]), self.batch_size):
            batch = pad_token_ids([ids[u] for u in pos], tok.pad_token_id or 0, left=tok.padding_side == "left")
            yield pos, {k: self._to(v) for k, v in batch.items()}

    def _encode(self, texts: list[str]) -> torch.Tensor:
        """(U, H) pooled embeddings of distinct texts: cached ones copied, the others encoded, then cached."""
        emb = torch.zeros(len(texts), self.runtime.text_dim, device=self.device)
        with self._lock:  # copy the hits out before another thread can evict and reuse their slots
            hit = [u for u, t in enumerate(texts) if t in self._slots]
            for u in hit:
                self._slots.move_to_end(texts[u])
            if hit:
                emb[hit] = self._table[[self._slots[texts[u]] for u in hit]]
        hit_set = set(hit)
        miss = [u for u in range(len(texts)) if u not in hit_set]
        for pos, batch in self.text_batches([texts[u] for u in miss]):
            emb[[miss[j] for j in pos]] = torch.as_tensor(self.runtime.encode(**batch)).float().to(self.device)
        with self._lock:
            self.texts_encoded, self.texts_cached = self.texts_encoded + len(miss), self.texts_cached + len(hit)
            self._store(texts, miss, emb)
        return emb

    def _store(self, texts: list[str], miss: list[int], emb: torch.Tensor) -> None:
        """Put freshly encoded texts into the LRU table (caller holds the lock)."""
        if not self.cache_size:
            return
        if self._table is None:
            self._table = torch.empty(self.cache_size, emb.shape[1], device=self.device)
        for u in miss[-self.cache_size:]:
            if texts[u] in self._slots:  # another thread encoded and stored it meanwhile
                self._slots.move_to_end(texts[u])
                continue
            if len(self._slots) < self.cache_size:
                slot = len(self._slots)
            else:
                slot = self._slots.popitem(last=False)[1]  # evict the least recently used text
            self._slots[texts[u]] = slot
            self._table[slot] = emb[u]

    def _by_text_group(self, texts: list[str], index: np.ndarray, sales: dict, out: Predictions) -> None:
        """Cross attention needs token states per record: run the whole model per text batch with all records
        sharing those texts, so token states live only for one batch of distinct texts."""
        rt = self.runtime
        local = np.full(len(texts), -1, dtype=np.int64)
        for pos, batch in self.text_batches(texts):
            local[:] = -1
            local[pos] = np.arange(len(pos))
            for rows in _chunks(np.nonzero(np.isin(index, pos))[0], HEAD_BATCH):
                self._put(out, rows, rt.batch_outputs({**batch, "text_index": self._to(torch.from_numpy(
                    local[index[rows]])), **{k: self._to(v[rows]) for k, v in sales.items()}}))
        for rows in _chunks(np.nonzero(index < 0)[0], HEAD_BATCH):
            empty = torch.zeros(0, 1, dtype=torch.long, device=self.device)
            self._put(out, rows, rt.batch_outputs({"input_ids": empty, "attention_mask": empty,
                                                   "text_index": self._to(torch.full((len(rows),), -1)),
                                                   **{k: self._to(v[rows]) for k, v in sales.items()}}))


def length_groups(lengths: np.ndarray, max_size: int, pass_cost: int = PASS_COST_TOKENS) -> list[np.ndarray]:
    """Encoder batches of texts by token count: positions sorted by length, cut where another pass costs less
    than padding every text to its batch's longest (the fewest padded tokens + `pass_cost` a pass; at most
    `max_size` texts a pass). 64 texts of 30 to 48 tokens pass in a few batches of similar lengths, not all
    padded to 48; a long window of sorted texts still passes in batches of `max_size`.

    >>> [g.tolist() for g in length_groups(np.array([48, 12, 47, 11, 12]), max_size=64)]
    [[3, 1, 4], [2, 0]]
    """
    order = np.argsort(lengths, kind="stable")
    width = np.asarray(lengths)[order]
    best, cut = np.zeros(len(order) + 1), np.zeros(len(order) + 1, dtype=np.int64)
    for j in range(1, len(order) + 1):  # best[j]: the first j sorted texts, the last pass order[cut[j]:j]
        starts = np.arange(max(0, j - max_size), j)
        costs = best[starts] + (j - starts) * width[j - 1] + pass_cost
        k = int(np.argmin(costs))
        best[j], cut[j] = costs[k], starts[k]
    groups, j = [], len(order)
    while j > 0:
        groups.append(order[cut[j]:j])
        j = int(cut[j])
    return groups[::-1]


def _chunks(rows: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for s in range(0, len(rows), size):
        yield rows[s:s + size]


def _numpy(x) -> np.ndarray:
    return x.float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def proba_frame(proba: np.ndarray, records: Any, labels: list[str]):
    """(n, n_classes) probabilities as a DataFrame, one column per label, indexed like `records` when it is a
    DataFrame (else 0..n-1)."""
    import pandas as pd

    index = records.index if isinstance(records, pd.DataFrame) else None
    return pd.DataFrame(proba, columns=list(labels), index=index)
