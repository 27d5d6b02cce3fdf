"""Training and evaluation records as memory-mapped Arrow (`datasets.Dataset`), built once and cached in the run.

    records file --stream: validate (flat duplicate check), product code, text code, summary moments,
        label counts--> RUN/data_cache/<name>-<fingerprint>/records.arrow + texts.arrow (distinct texts)
    texts.arrow --Dataset.map(tokenizer, batched)--> tokens-<tokenizer fingerprint>.arrow (input_ids per text)
The DataLoaders read rows through `ArrowRecords`, which memory-maps the file afresh every few hundred rows:
resident memory holds a batch and a bounded window of mapped pages, not the records, so RAM stays flat from
100k to millions of records. The collator takes each record's tokens from the tokens file by text code, so
each distinct text is tokenized once, by `map`, not once per batch. What training needs from all records
(summary scaling, class counts, labels present, product groups) is gathered during the one build pass and
saved as stats.json beside the Arrow files; a rerun with the same file, size, mtime and options reuses the
cache, and the tokens file is reused while the tokenizer and max_length are the same.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset as TorchDataset

from trendnlp.config import TextConfig
from trendnlp.data.channels import context_channels, require_channels
from trendnlp.data.features import build_text
from trendnlp.data.columns import record_tables
from trendnlp.data.sales_stats import summary_stats_flat
from trendnlp.data.schema import arrow_features
from trendnlp.data.io import new_folder
from trendnlp.data.records import ErrorReport
from trendnlp.labels import LabelRule

CACHE_VERSION = 6  # bump when the row schema changes: older caches are rebuilt
ARROW_FILE = "records.arrow"
TEXTS_FILE = "texts.arrow"
WRITER_BATCH = 10_000  # rows buffered before an Arrow record batch is written
REMAP_ROWS = 256  # rows read through one mapping of the file before ArrowRecords maps it afresh
RECENT_TEXTS = 1 << 16  # distinct texts remembered while numbering them


def _features(text_codes: bool):
    """The cached rows: the record's declared features (trendnlp.data.schema), `product_code` and, with texts,
    `text_code` first."""
    from datasets import Value

    features = arrow_features(**({"text_code": Value("int32")} if text_codes else {}))
    features["product_code"] = Value("int32")
    return features


def _fingerprint(path: Path, options: dict) -> str:
    st = path.stat()
    key = json.dumps({"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                      "options": options, "version": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def build_record_dataset(path: str | Path, cache_dir: str | Path, *, history: int, rule: LabelRule,
                         on_error: str = "raise", report: ErrorReport | None = None, text: TextConfig | None = None,
                         sales: Any = None):
    """Validate a records file into a memory-mapped Arrow `Dataset` (cached), plus what training needs from it.

    Args:
        path: records file (.jsonl / .csv / .parquet), read as a stream.
        cache_dir: folder for the Arrow cache (e.g. RUN/data_cache); reused when the file and options match.
        history, rule: as for `read_records` (longest sales history, label rule for future_sales-only rows).
        on_error: "raise" or "skip" (skipped rows go to `report`; a cached build stores and replays them).
        report: collects skipped rows.
        text: the model's text config: each row also gets `text_code`, the row of its text (as `build_text`
            composes it) in texts.arrow beside the records, or -1 when it has none; None leaves texts out.
        sales: the model's SalesConfig: a channel it feeds that some record lacks is refused (`require_channels`,
            as training in memory), batch by batch; a refused build leaves no folder behind.
    Returns:
        (dataset, stats): rows are normalised records plus `product_code` (int, per distinct product_id);
        stats = {"n", "label_counts", "unlabelled", "summary_mean", "summary_std", "n_products", "n_texts",
        "carried" (the context channels every record carries), "build_s", "cached", "folder"}.

    >>> ds, stats = build_record_dataset("train.parquet", "runs/x/data_cache", history=26, rule=LabelRule())  # doctest: +SKIP
    """
    import time

    import pyarrow as pa
    from datasets import Dataset
    from datasets.arrow_writer import ArrowWriter

    path, t0 = Path(path), time.perf_counter()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such records file")
    text_key = None if text is None else {"include_reviews": text.include_reviews, "max_reviews": text.max_reviews}
    fp = _fingerprint(path, {"history": history, "rule": vars(rule), "on_error": on_error, "text": text_key})
    folder = Path(cache_dir) / f"{path.name.split('.')[0]}-{fp}"
    if (folder / "stats.json").is_file():
        stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
        if sales is not None:  # checked when built: the same refusal as then
            require_channels(sales, set(stats["carried"]), str(path))
        if report is not None:
            for err in stats.get("errors", []):
                report.add(_replayed(err))
        return Dataset.from_file(str(folder / ARROW_FILE)), {**stats, "cached": True, "folder": str(folder)}
    acc = _Accumulator(history, rule)
    skipped = ErrorReport()
    tables = record_tables(path, on_error=on_error, history=history, rule=rule, report=skipped)

    shutil.rmtree(folder, ignore_errors=True)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with new_folder(tmp), contextlib.ExitStack() as files:  # a failed build leaves no folder behind
        features = _features(text is not None)
        writer = files.enter_context(ArrowWriter(features=features, path=str(tmp / ARROW_FILE),
                                                 writer_batch_size=WRITER_BATCH))
        texts = None if text is None else _TextCodes(text, files.enter_context(ArrowWriter(
            features=_text_features(), path=str(tmp / TEXTS_FILE), writer_batch_size=WRITER_BATCH)))
        for table in tables:  # streamed: one batch of records in memory at a time
            if not table.num_rows:
                continue
            columns = {"product_code": pa.array(acc.add_table(table), pa.int32()), **{
                name: table.column(name) for name in table.column_names}}
            if sales is not None:  # before the first record lacking a fed channel is kept
                require_channels(sales, acc.carried, str(path))
            if texts is not None:
                columns["text_code"] = pa.array(texts.codes(table))
            writer.write_table(pa.Table.from_pydict({name: columns[name] for name in features},
                                                    schema=features.arrow_schema))
        writer.finalize()
        if texts is not None:
            texts.writer.finalize()
    stats = {**acc.stats(), "n_texts": texts.n if texts is not None else 0,
             "errors": [e.as_report() for e in skipped.errors], "build_s": time.perf_counter() - t0}
    (tmp / "stats.json").write_text(json.dumps(stats), encoding="utf-8")
    tmp.rename(folder)  # the cache exists only once complete
    if report is not None:
        for err in skipped.errors:
            report.add(err)
    return Dataset.from_file(str(folder / ARROW_FILE)), {**stats, "cached": False, "folder": str(folder)}


def _text_features():
    from datasets import Features, Value

    return Features({"text": Value("string")})


class _TextCodes:
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


class ArrowRecords(TorchDataset):
    """Rows of an Arrow file of a build (records or tokens), read for DataLoaders in bounded memory.

    A memory map kept open for a whole epoch ends up resident with every page of the file that random reads
    touched (each row read touches a page of every column): the process's RSS would grow with the file. This
    reader maps the file afresh every `remap_rows` rows, so the pages of older reads are unmapped and
    resident memory stays bounded however large the file. Pickles as its path (DataLoader workers reopen it).

    Args:
        path: an Arrow file written by `build_record_dataset` or `tokenize_texts`.
        remap_rows: rows read through one mapping.
    """

    def __init__(self, path: str | Path, remap_rows: int = REMAP_ROWS):
        self.path, self.remap_rows = str(path), remap_rows
        self.folder = Path(path).parent  # the build folder
        self._ds, self._read = None, 0
        self._len = len(self._dataset())
        self._ds = None  # mapped again on the first read

    def _dataset(self):
        from datasets import Dataset

        if self._ds is None or self._read >= self.remap_rows:
            self._ds = None  # drop the old mapping before the new one
            self._ds, self._read = Dataset.from_file(self.path), 0
        return self._ds

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([int(i)])[0]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        rows = self._dataset().__getitems__([int(i) for i in indices])
        self._read += len(indices)
        return rows

    def column(self, name: str) -> np.ndarray:
        """One numeric column as a numpy array, read batch by batch with plain file reads: through a memory
        map, every record batch's column (and the pages around it) would stay resident at once."""
        import pyarrow as pa

        with pa.OSFile(self.path) as f:
            reader = pa.ipc.open_stream(f)
            out, pos = None, 0
            for batch in reader:  # one batch in memory at a time; its column copied out
                values = batch.column(name).to_numpy(zero_copy_only=False)
                out = np.empty(self._len, dtype=values.dtype) if out is None else out
                out[pos:pos + len(values)] = values
                pos += len(values)
        return out if out is not None else np.zeros(0)

    def __getstate__(self) -> dict:
        return {"path": self.path, "remap_rows": self.remap_rows, "folder": self.folder, "_len": self._len,
                "_ds": None, "_read": 0}


class _Accumulator:
    """One pass over validated records: product codes, label counts, summary-statistic moments (a
    StandardScaler fitted batch by batch with `partial_fit`)."""

    def __init__(self, history: int, rule: LabelRule):
        from sklearn.preprocessing import StandardScaler

        self.history, self.rule = history, rule
        self.codes: dict[str, int] = {}
        self.labels: dict[str, int] = {}
        self.unlabelled, self.n = None, 0
        self.scaler = StandardScaler()
        self.carried = {c.name for c in context_channels()}  # left when some record lacks it (null)

    def add_table(self, table) -> np.ndarray:
        """Count an Arrow table of records; returns their product codes (first seen, first numbered)."""
        import pyarrow.compute as pc

        sales = table.column("sales").combine_chunks()
        z = summary_stats_flat(sales.values.to_numpy(zero_copy_only=False), sales.offsets.to_numpy(), self.history,
                               self.rule.K, self.rule.alpha)
        self.scaler.partial_fit(z.astype(np.float64))
        self.n += table.num_rows
        self.carried -= {name for name in self.carried if table.column(name).null_count}
        labels = table.column("label")
        for item in pc.value_counts(labels.drop_null()).to_pylist():
            self.labels[item["values"]] = self.labels.get(item["values"], 0) + item["counts"]
        if labels.null_count and self.unlabelled is None:
            i = int(np.flatnonzero(labels.is_null().to_numpy(zero_copy_only=False))[0])
            self.unlabelled = {"product_id": table.column("product_id")[i].as_py(),
                               "cutoff": table.column("cutoff")[i].as_py()}
        ids = table.column("product_id").combine_chunks().dictionary_encode()  # dictionary in first-seen order
        codes = self.codes
        known = np.array([codes.setdefault(p, len(codes)) for p in ids.dictionary.to_pylist()], dtype=np.int32)
        return known[ids.indices.to_numpy(zero_copy_only=False)]

    def stats(self) -> dict:
        mean = self.scaler.mean_ if self.n else np.zeros(0)
        std = np.sqrt(self.scaler.var_) if self.n else np.zeros(0)
        return {"n": self.n, "label_counts": self.labels, "unlabelled": self.unlabelled,
                "summary_mean": mean.tolist(), "summary_std": std.tolist(), "n_products": len(self.codes),
                "carried": sorted(self.carried)}


def _replayed(err: dict):
    from trendnlp.data.records import RecordError

    return RecordError(err["source"], err["row"], err["field"], err["reason"], err.get("product_id"))


def build_options(config) -> dict:
    """The `build_record_dataset` options a training config implies (a build with them is reused by `train`)."""
    return {"history": config.sales.history, "rule": config.labels.rule(),
            "text": config.text if config.text.enabled else None, "sales": config.sales}


def load_arrow_splits(config, cache_dir: str | Path, errors_path: Path | None = None) -> tuple:
    """`training.load_splits` on Arrow: (train, validation, test or None, train stats) of config.data, each
    split an `ArrowRecords` (its `folder` holds the texts to tokenize with `tokenize_texts`).

    Needs data.validation (the time holdout of an in-memory split would read every record into RAM).
    Rows skipped under data.on_error=skip go to `errors_path`; a split with no records, or a record with
    neither label nor future_sales, is an error naming the file.
    """
    d = config.data
    if not d.train or not d.validation:
        raise ValueError("config: data.arrow=true needs data.train and data.validation files, found "
                         f"train={d.train!r} validation={d.validation!r}")
    report = ErrorReport()
    kw = dict(build_options(config), on_error=d.on_error, report=report)
    stats = {name: build_record_dataset(getattr(d, name), cache_dir, **kw)[1]  # the Dataset (and its map) dropped
             for name in ("train", "validation", "test") if getattr(d, name)}
    for name, st in stats.items():
        if not st["n"] or st["unlabelled"]:
            bad = st["unlabelled"]
            raise ValueError(f"{name} records ({getattr(d, name)}): " + (
                f"product_id={bad['product_id']!r} cutoff={bad['cutoff']} has neither `label` nor `future_sales`"
                if bad else "none left") + "; training and evaluation need labelled records")
    if errors_path is not None and (len(report) or d.on_error == "skip"):  # once the splits are accepted
        report.write(errors_path)
    recs = {name: ArrowRecords(Path(st["folder"]) / ARROW_FILE) for name, st in stats.items()}
    return recs["train"], recs["validation"], recs.get("test"), stats["train"]


def scaling_rows(stats: dict) -> np.ndarray:
    """Two summary rows, mean + std and mean - std, whose mean and (population) std are the stats' own: what
    `SalesEncoder.fit_summary_scaler` needs, without holding every record's summary in memory."""
    mean, std = np.asarray(stats["summary_mean"]), np.asarray(stats["summary_std"])
    return np.stack([mean + std, mean - std])
