"""Training and evaluation records as memory-mapped Arrow (`datasets.Dataset`), built once and cached in the run.

    records file --stream: validate (flat duplicate check), product code, summary moments, label counts-->
        Arrow on disk (RUN/data_cache/<name>-<fingerprint>/) --load_from_disk--> memory-mapped Dataset
The DataLoader reads rows from the Dataset one index at a time, so resident memory holds a batch, not the
records: RAM stays flat from 100k to millions of records. What training needs from all records (summary
scaling, class counts, labels present, product groups) is gathered during the one build pass and saved as
stats.json beside the Arrow files; a rerun with the same file, size, mtime and options reuses the cache.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from trendnlp.data.features import summary_stats
from trendnlp.data.keys import KeySet
from trendnlp.data.records import ErrorReport, iter_raw_rows, detect_format, validate_rows
from trendnlp.labels import LabelRule

CACHE_VERSION = 2  # bump when the row schema changes: older caches are rebuilt
ARROW_FILE = "records.arrow"
WRITER_BATCH = 10_000  # rows buffered before an Arrow record batch is written


def _features():
    from datasets import Features, Sequence, Value

    return Features({"product_id": Value("string"), "title": Value("string"), "description": Value("string"),
                     "reviews": Sequence(Value("string")), "sales": Sequence(Value("float64")),
                     "cutoff": Value("string"), "freq": Value("string"), "label": Value("string"),
                     "future_sales": Sequence(Value("float64")),
                     # the optional context fields (DESIGN §1); price holds nulls where nothing sold
                     "price": Sequence(Value("float64")), "market_sales": Sequence(Value("float64")),
                     "first_sale": Value("string"), "change": Value("float64"), "product_code": Value("int32")})


def _fingerprint(path: Path, options: dict) -> str:
    st = path.stat()
    key = json.dumps({"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                      "options": options, "version": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def build_record_dataset(path: str | Path, cache_dir: str | Path, *, history: int, rule: LabelRule,
                         on_error: str = "raise", report: ErrorReport | None = None):
    """Validate a records file into a memory-mapped Arrow `Dataset` (cached), plus what training needs from it.

    Args:
        path: records file (.jsonl / .csv / .parquet), read as a stream.
        cache_dir: folder for the Arrow cache (e.g. RUN/data_cache); reused when the file and options match.
        history, rule: as for `read_records` (longest sales history, label rule for future_sales-only rows).
        on_error: "raise" or "skip" (skipped rows go to `report`; a cached build stores and replays them).
        report: collects skipped rows.
    Returns:
        (dataset, stats): rows are normalised records plus `product_code` (int, per distinct product_id);
        stats = {"n", "label_counts", "unlabelled", "summary_mean", "summary_std", "n_products", "build_s",
        "cached"}.

    >>> ds, stats = build_record_dataset("train.parquet", "runs/x/data_cache", history=26, rule=LabelRule())  # doctest: +SKIP
    """
    import time

    from datasets import Dataset
    from datasets.arrow_writer import ArrowWriter

    path, t0 = Path(path), time.perf_counter()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such records file")
    fp = _fingerprint(path, {"history": history, "rule": vars(rule), "on_error": on_error})
    folder = Path(cache_dir) / f"{path.name.split('.')[0]}-{fp}"
    if (folder / "stats.json").is_file():
        stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
        if report is not None:
            for err in stats.get("errors", []):
                report.add(_replayed(err))
        return Dataset.from_file(str(folder / ARROW_FILE)), {**stats, "cached": True}
    acc = _Accumulator(history, rule)
    skipped = ErrorReport()
    rows = validate_rows(iter_raw_rows(path), source=str(path), on_error=on_error, history=history, rule=rule,
                         csv_encoded=detect_format(path) == "csv", report=skipped, seen=KeySet())

    shutil.rmtree(folder, ignore_errors=True)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with ArrowWriter(features=_features(), path=str(tmp / ARROW_FILE), writer_batch_size=WRITER_BATCH) as writer:
        for _, rec in rows:  # streamed: one writer batch of rows in memory at a time
            writer.write(acc.add(rec))
        writer.finalize()
    stats = {**acc.stats(), "errors": [e.as_report() for e in skipped.errors], "build_s": time.perf_counter() - t0}
    (tmp / "stats.json").write_text(json.dumps(stats), encoding="utf-8")
    tmp.rename(folder)  # the cache exists only once complete
    if report is not None:
        for err in skipped.errors:
            report.add(err)
    return Dataset.from_file(str(folder / ARROW_FILE)), {**stats, "cached": False}


class _Accumulator:
    """One pass over validated records: product codes, label counts, summary-statistic moments."""

    def __init__(self, history: int, rule: LabelRule):
        self.history, self.rule = history, rule
        self.codes: dict[str, int] = {}
        self.labels: dict[str, int] = {}
        self.unlabelled, self.n = None, 0
        self.sum = self.sumsq = None

    def add(self, rec: dict) -> dict:
        z = summary_stats(np.asarray(rec["sales"], dtype=np.float64)[-self.history:], self.history, self.rule.K,
                          self.rule.alpha)
        if self.sum is None:
            self.sum, self.sumsq = np.zeros_like(z), np.zeros_like(z)
        self.sum += z
        self.sumsq += z * z
        self.n += 1
        if rec["label"] is None:
            self.unlabelled = self.unlabelled or {"product_id": rec["product_id"], "cutoff": rec["cutoff"]}
        else:
            self.labels[rec["label"]] = self.labels.get(rec["label"], 0) + 1
        code = self.codes.setdefault(rec["product_id"], len(self.codes))
        return {**rec, "product_code": code}

    def stats(self) -> dict:
        mean = self.sum / max(self.n, 1) if self.n else np.zeros(0)
        std = np.sqrt(np.maximum(self.sumsq / max(self.n, 1) - mean * mean, 0.0)) if self.n else np.zeros(0)
        return {"n": self.n, "label_counts": self.labels, "unlabelled": self.unlabelled,
                "summary_mean": mean.tolist(), "summary_std": std.tolist(), "n_products": len(self.codes)}


def _replayed(err: dict):
    from trendnlp.data.records import RecordError

    return RecordError(err["source"], err["row"], err["field"], err["reason"], err.get("product_id"))


def load_arrow_splits(config, cache_dir: str | Path, errors_path: Path | None = None) -> tuple:
    """`training.load_splits` on Arrow: (train, validation, test or None, train stats) of config.data.

    Needs data.validation (the time holdout of an in-memory split would read every record into RAM).
    Rows skipped under data.on_error=skip go to `errors_path`; a split with no records, or a record with
    neither label nor future_sales, is an error naming the file.
    """
    d = config.data
    if not d.train or not d.validation:
        raise ValueError("config: data.arrow=true needs data.train and data.validation files, found "
                         f"train={d.train!r} validation={d.validation!r}")
    report = ErrorReport()
    kw = dict(history=config.sales.history, rule=config.labels.rule(), on_error=d.on_error, report=report)
    parts = {name: build_record_dataset(getattr(d, name), cache_dir, **kw) if getattr(d, name) else (None, None)
             for name in ("train", "validation", "test")}
    if errors_path is not None and (len(report) or d.on_error == "skip"):
        report.write(errors_path)
    for name, (ds, stats) in parts.items():
        if ds is not None and (not stats["n"] or stats["unlabelled"]):
            bad = stats["unlabelled"]
            raise ValueError(f"{name} records ({getattr(d, name)}): " + (
                f"product_id={bad['product_id']!r} cutoff={bad['cutoff']} has neither `label` nor `future_sales`"
                if bad else "none left") + "; training and evaluation need labelled records")
    return parts["train"][0], parts["validation"][0], parts["test"][0], parts["train"][1]


def scaling_rows(stats: dict) -> np.ndarray:
    """Two summary rows, mean + std and mean - std, whose mean and (population) std are the stats' own: what
    `SalesEncoder.fit_summary_scaler` needs, without holding every record's summary in memory."""
    mean, std = np.asarray(stats["summary_mean"]), np.asarray(stats["summary_std"])
    return np.stack([mean + std, mean - std])


class GroupedIndexSampler(Sampler[int]):
    """`collate.ProductGroupedSampler` on int product codes in numpy: the same grouping (products shuffled,
    each product's records together and shuffled, chunks of `chunk` shuffled again), a few bytes per record.

    Args:
        codes: (N,) product code of each record (from the Arrow dataset's `product_code` column).
        seed: base seed; the order changes with `set_epoch`.
        chunk: group size kept together.
    """

    def __init__(self, codes: Any, seed: int = 0, chunk: int = 8):
        self.codes, self.seed, self.chunk, self.epoch = np.asarray(codes, dtype=np.int64), seed, max(1, chunk), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.codes)

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        rank = rng.permutation(int(self.codes.max()) + 1 if len(self.codes) else 0)  # product order
        order = np.lexsort((rng.random(len(self.codes)), rank[self.codes]))  # by product, shuffled inside
        # chunk starts shuffled, slices taken lazily: a list of chunk arrays would cost ~100 bytes per chunk
        for start in rng.permutation(np.arange(0, len(order), self.chunk)):
            yield from (int(i) for i in order[start:start + self.chunk])
