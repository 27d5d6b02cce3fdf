"""The texts of an Arrow build: each distinct text numbered once into texts.arrow while the records are written
(`TextCodes`), then tokenized once by `Dataset.map` into a tokens file named by the tokenizer (`tokenize_texts`)."""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

from trendnlp.config import TextConfig
from trendnlp.data.inputs.arrow_rows import CACHE_VERSION, ArrowRecords
from trendnlp.data.inputs.features import build_text

TEXTS_FILE = "texts.arrow"
RECENT_TEXTS = 1 << 16  # distinct texts remembered while numbering them


def text_features():
    """The rows of texts.arrow."""
    from datasets import Features, Value

    return Features({"text": Value("string")})


class TextCodes:
    """Numbers distinct texts as they first appear and writes each once to texts.arrow.

    Only the `keep` most recent texts are remembered, so memory stays flat on millions of records (a
    product's records usually sit together); a text met again after it was forgotten gets a new number:
    one more tokenization, never a wrong token row.
    """

    def __init__(self, cfg: TextConfig, writer, keep: int = RECENT_TEXTS):
        self.cfg, self.writer, self.keep, self.recent, self.n = cfg, writer, keep, OrderedDict(), 0

    def codes(self, table) -> np.ndarray:
        """The text code of each record of an Arrow table of records; without reviews in the text, composed
        once per distinct (title, description) pair of the table, not once per record."""
        import pyarrow.compute as pc

        cfg, title, description = self.cfg, table.column("title"), table.column("description")
        if cfg.include_reviews and cfg.max_reviews > 0 and pc.sum(pc.list_value_length(table.column("reviews"))).as_py():
            rows = zip(title.to_pylist(), description.to_pylist(), table.column("reviews").to_pylist())
            return np.array([self.code(build_text({"title": t, "description": d, "reviews": r}, cfg))
                             for t, d, r in rows], dtype=np.int32)
        t, d = (col.combine_chunks().dictionary_encode() for col in (title, description))
        pair = t.indices.to_numpy().astype(np.int64) * len(d.dictionary) + d.indices.to_numpy()
        first, inverse = np.unique(pair, return_index=True, return_inverse=True)[1:]
        order = np.argsort(first, kind="stable")  # numbered in the order the pairs first appear
        titles, descriptions = t.dictionary.to_pylist(), d.dictionary.to_pylist()
        codes = np.empty(len(first), dtype=np.int32)
        for k in order.tolist():
            row = int(first[k])
            codes[k] = self.code(build_text({"title": titles[t.indices[row].as_py()],
                                             "description": descriptions[d.indices[row].as_py()]}, cfg))
        return codes[inverse.ravel()]

    def code(self, text: str) -> int:
        if not text:
            return -1
        code = self.recent.get(text)
        if code is not None:
            self.recent.move_to_end(text)
            return code
        code, self.n = self.n, self.n + 1
        self.writer.write({"text": text})
        self.recent[text] = code
        if len(self.recent) > self.keep:
            self.recent.popitem(last=False)
        return code


def tokenize_texts(folder: str | Path, tokenizer, max_length: int, progress: bool = False) -> "ArrowRecords | None":
    """Token ids of each distinct text of a build (texts.arrow), by `Dataset.map`, cached in the build folder.

    Args:
        folder: a build folder (stats["folder"] of `build_record_dataset` with `text`).
        tokenizer: the model's tokenizer; the cache file is named by a fingerprint of its vocabulary, its
            settings and max_length, so another tokenizer never reuses these ids.
        max_length: truncation length (text.max_length).
        progress: show the `map` progress bar.
    Returns:
        `ArrowRecords` of {"input_ids": [...]} rows, row i for text code i; None when the build has no texts
        (built without `text`, or no record has any).
    """
    import datasets
    from datasets import Dataset, Features, Sequence, Value

    folder = Path(folder)
    if not (folder / TEXTS_FILE).is_file():
        return None
    texts = Dataset.from_file(str(folder / TEXTS_FILE))
    if not len(texts):  # no record has text: nothing to look up
        return None
    fp = _tokenizer_fingerprint(tokenizer, max_length)
    target = folder / f"tokens-{fp}.arrow"
    if not target.is_file():
        was_on = datasets.is_progress_bar_enabled()
        (datasets.enable_progress_bars if progress else datasets.disable_progress_bars)()
        try:
            texts.map(
                _Tokenize(tokenizer, max_length), batched=True, batch_size=1000, remove_columns=["text"],
                features=Features({"input_ids": Sequence(Value("int32"))}), cache_file_name=str(target),
                new_fingerprint=fp, load_from_cache_file=True, desc="tokenizing distinct texts")
        finally:
            (datasets.enable_progress_bars if was_on else datasets.disable_progress_bars)()
    return ArrowRecords(target)


class _Tokenize:
    """The `map` function: a batch of texts -> their token ids (truncated, unpadded)."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, batch: dict) -> dict:
        enc = self.tokenizer(batch["text"], truncation=True, max_length=self.max_length,
                             return_attention_mask=False, return_token_type_ids=False)
        return {"input_ids": enc["input_ids"]}


def _tokenizer_fingerprint(tokenizer, max_length: int) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a fast tokenizer's whole spec, less the truncation and padding its calls set
        spec = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
    else:
        spec = [sorted(tokenizer.get_vocab().items()), repr(sorted(tokenizer.init_kwargs.items()))]
    key = json.dumps([type(tokenizer).__name__, spec, max_length, CACHE_VERSION])
    return hashlib.sha256(key.encode()).hexdigest()[:16]
