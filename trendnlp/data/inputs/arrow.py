"""Training and evaluation records as memory-mapped Arrow (`datasets.Dataset`), built once and cached in the run.

    records file --stream: validate (flat duplicate check), product code, text code, summary moments,
        label counts--> RUN/data_cache/<name>-<fingerprint>/records.arrow + texts.arrow (distinct texts)
    texts.arrow --Dataset.map(tokenizer, batched)--> tokens-<tokenizer fingerprint>.arrow (input_ids per text)
The texts are numbered and tokenized by arrow_texts.py. The DataLoaders read rows through `ArrowRecords`
(arrow_rows.py), which memory-maps the file afresh every few hundred rows:
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
from pathlib import Path
from typing import Any

import numpy as np

from trendnlp.config import TextConfig
from trendnlp.data.inputs.arrow_rows import CACHE_VERSION, ArrowRecords
from trendnlp.data.inputs.arrow_texts import TEXTS_FILE, TextCodes, text_features
from trendnlp.data.record_files.channels import context_channels, require_channels
from trendnlp.data.record_files.columns import record_tables
from trendnlp.data.inputs.sales_stats import summary_stats_flat
from trendnlp.data.record_files.schema import arrow_features
from trendnlp.data.record_files.io import new_folder
from trendnlp.data.record_files.records import require_labels
from trendnlp.data.record_files.io import ErrorReport
from trendnlp.labels import LabelRule

ARROW_FILE = "records.arrow"
WRITER_BATCH = 10_000  # rows buffered before an Arrow record batch is written


def _features(text_codes: bool):
    """The cached rows: the record's declared features (trendnlp.data.record_files.schema), `product_code` and, with texts,
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
        texts = None if text is None else TextCodes(text, files.enter_context(ArrowWriter(
            features=text_features(), path=str(tmp / TEXTS_FILE), writer_batch_size=WRITER_BATCH)))
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
    from trendnlp.data.record_files.io import RecordError

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
        require_labels(f"{name} records ({getattr(d, name)})", st["n"], st["unlabelled"])
    if errors_path is not None and (len(report) or d.on_error == "skip"):  # once the splits are accepted
        report.write(errors_path)
    recs = {name: ArrowRecords(Path(st["folder"]) / ARROW_FILE) for name, st in stats.items()}
    return recs["train"], recs["validation"], recs.get("test"), stats["train"]


