"""Training data behind one interface: records held in memory (JSONL/CSV/Parquet read and validated) or an Arrow
build on disk (data.arrow, for millions of records). `load_data` reads the splits; `TrainData` fits the model's
feature scaling and makes the train and validation loaders the same way for both."""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Sampler

from trendnlp.config import TrainConfig, TrendConfig
from trendnlp.data.record_files.channels import carried_channels, require_channels
from trendnlp.data.inputs.sampler import ProductGroupedSampler, product_codes
from trendnlp.data.record_files.parts import is_records_path, read_parts
from trendnlp.data.record_files.records import first_unlabelled, require_labels
from trendnlp.data.record_files.io import ErrorReport


@dataclass
class TrainData:
    """The splits of one run: record lists (in memory) or ArrowRecords (Arrow), plus the Arrow build's stats."""

    train: Any
    validation: Any
    test: Any  # None without data.test
    arrow: dict | None = None  # the Arrow build's stats (label counts, summary mean and std), None in memory

    def label_counts(self) -> dict[str, int]:
        """{label: count} of the training records (class weights)."""
        return self.arrow["label_counts"] if self.arrow else dict(Counter(r["label"] for r in self.train))

    def fit_scaling(self, model) -> None:
        """Fit the model's summary-statistics scaling on the training records (from the Arrow build's one pass)."""
        if self.arrow is None:
            model.fit_feature_scaling(self.train)
        elif model.sales_encoder is not None:
            model.sales_encoder.set_summary_scaler(self.arrow["summary_mean"], self.arrow["summary_std"])

    def loaders(self, model, tc: TrainConfig, accelerator: Accelerator, show: bool) -> tuple[DataLoader, DataLoader]:
        """Unprepared train and validation loaders. Plain shuffling is a RandomSampler, which accelerate turns
        into its seedable sampler (order from data_seed + epoch, so a resumed run sees the same batches)."""
        chunk, sampler = max(1, tc.batch_size // 4), None
        if tc.group_by_product:  # Arrow records carry their product codes in a column, not a list of ids
            codes = (product_codes(r["product_id"] for r in self.train) if self.arrow is None
                     else self.train.column("product_code"))
            sampler = ProductGroupedSampler(codes, seed=tc.seed, chunk=chunk)
        if self.arrow is None:
            train_collate = val_collate = model.make_collator(dedup=tc.dedup_text)
        else:  # each split's distinct texts tokenized once, by Dataset.map, in the main process first
            from trendnlp.data.inputs.arrow_texts import tokenize_texts

            with accelerator.main_process_first():
                tokens = [tokenize_texts(recs.folder, model.tokenizer, model.config.text.max_length, show)
                          if model.tokenizer is not None else None for recs in (self.train, self.validation)]
            train_collate, val_collate = (model.make_collator(dedup=tc.dedup_text, tokens=t) for t in tokens)
        return (make_loader(self.train, train_collate, tc.batch_size, tc.seed, sampler, tc.num_workers,
                            shuffle=sampler is None),
                make_loader(self.validation, val_collate, tc.eval_batch_size, tc.seed, workers=tc.num_workers))


def load_data(config: TrendConfig, accelerator: Accelerator, out: Path) -> TrainData:
    """The run's splits: config.data read into memory, or (data.arrow) built once into out/data_cache."""
    errors = out / "errors.csv" if accelerator.is_main_process else None
    if config.data.arrow:
        from trendnlp.data.inputs.arrow import load_arrow_splits

        with accelerator.main_process_first():  # the main process builds the Arrow cache; the others reuse it
            return TrainData(*load_arrow_splits(config, out / "data_cache", errors))
    train, val, test = load_splits(config, errors)
    if accelerator.is_main_process:
        warn_on_class_coverage(train, val, config.labels.names)
    return TrainData(train, val, test)


def check_data_files(config: TrendConfig) -> None:
    """Before a run writes anything: data.train is set and every data file named in the config exists."""
    d = config.data
    if not d.train:
        raise ValueError("config: data.train is empty; set it to a records file, e.g. --set data.train=train.jsonl")
    for key in ("train", "validation", "test"):
        path = getattr(d, key)
        if path and not is_records_path(path):
            raise FileNotFoundError(f"config: data.{key}: {path}: no such records file (or folder of parts); fix "
                                    f"the path or --set data.{key}=FILE")


def load_splits(config: TrendConfig, errors_path: Path | None = None) -> tuple[list, list, list | None]:
    """Validated, labelled train, validation and (optional) test records of config.data.

    An empty data.validation holds out the latest cutoffs of train (trendnlp.data.record_files.split.time_holdout).
    Rows skipped under data.on_error=skip are written to `errors_path`.
    """
    d = config.data
    check_data_files(config)
    report = ErrorReport()
    kw = dict(on_error=d.on_error, history=config.sales.history, rule=config.labels.rule(), report=report)
    train = read_parts(d.train, **kw)  # a records file, or a folder of parts (`prepare --num-shards`)
    if d.validation:
        val = read_parts(d.validation, **kw)
    else:
        from trendnlp.data.record_files.split import time_holdout

        train, val = time_holdout(train, d.val_fraction, config.labels.F)
    test = read_parts(d.test, **kw) if d.test else None
    for name, recs in (("train", train), ("validation", val), ("test", test)):
        if recs is not None:
            require_labels(f"{name} records ({getattr(d, name) or d.train})", len(recs), first_unlabelled(recs))
        if recs:  # a channel the config feeds but the records lack would be all zeros
            require_channels(config.sales, carried_channels(recs), getattr(d, name) or d.train)
    if errors_path is not None and (len(report) or d.on_error == "skip"):  # once the splits are accepted
        report.write(errors_path)
    return train, val, test


def warn_on_class_coverage(train_recs: list, val_recs: list, names: Sequence[str]) -> None:
    """Warn when training sees a single class, or validation lacks a class training has (its F1 is then 0)."""
    seen = {r["label"] for r in train_recs}
    if len(seen) < 2:
        warnings.warn(f"training records hold a single class ({sorted(seen)}); the model cannot learn to tell "
                      "trends apart. Check the label rule (labels.tau) or the data", UserWarning, stacklevel=3)
    absent = [n for n in names if n in seen and n not in {r["label"] for r in val_recs}]
    if absent:
        warnings.warn(f"validation records hold no {absent} record(s): macro-F1 counts those classes as 0 and "
                      "early stopping is noisier; use a larger or later validation window", UserWarning,
                      stacklevel=3)


def make_loader(records, collate, batch_size: int, seed: int, sampler: Sampler | None = None, workers: int = 0,
                shuffle: bool = False) -> DataLoader:
    """A DataLoader with its own generator: the iterator draws its base seed from it instead of torch's global
    RNG, which keeps dropout identical between an uninterrupted and a resumed run."""
    return DataLoader(records, batch_size=batch_size, sampler=sampler, shuffle=shuffle, collate_fn=collate,
                      num_workers=workers, generator=torch.Generator().manual_seed(seed))
