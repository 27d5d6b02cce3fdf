"""One table in, one saved model out: split labelled records by cutoff, train, score test, write metrics.json.

    records (from `prepare`, or a records file) --latest_ranges--> train | gap | validation | test
        train            every cutoff up to one purge before validation
        gap              the purged cutoffs between train and validation (labels known before test: refit only)
        validation       the `val_periods` cutoffs ending one purge before test
        test             the newest `test_periods` labelled cutoffs
    --> DIR/data/{train,validation,test,refit_extra}.parquet --training.train--> DIR/model
    --> DIR/metrics.json: the split, the saved model on validation and test, and each branch alone

`trendnlp train --sales LOG` / `--records FILE` and the benchmark's `trendnlp` row both run `train_on_records`,
so the row a user compares is the model this command saves.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from trendnlp.config import TrendConfig
from trendnlp.data.record_files.channels import carried_channels, require_channels
from trendnlp.data.record_files.io import write_json
from trendnlp.data.record_files.split import latest_ranges, split_by_cutoff, write_splits
from trendnlp.outputs import exclusive_output, rank_tag

DEFAULT_TEST_PERIODS = 3  # as the benchmark: three test cutoffs, three validation cutoffs, one horizon between parts
DEFAULT_VAL_PERIODS = 3


def split_latest(records: Sequence[dict], config: TrendConfig, test_periods: int = DEFAULT_TEST_PERIODS,
                 val_periods: int = DEFAULT_VAL_PERIODS) -> tuple[dict[str, list[dict]], dict]:
    """Split labelled records by cutoff, counted back from the newest labelled cutoff (`latest_ranges`).

    The purge between parts is the label rule's F (a label looks F periods ahead), so no training or
    validation label is computed from sales that a test label also sees.

    Args:
        records: normalised records with `cutoff` and `label`; unlabelled ones are left out (and counted).
        config: the run's config (its label rule gives the purge).
        test_periods, val_periods: cutoffs in the test and validation parts.
    Returns:
        ({"train", "validation", "test", "refit_extra"}: record lists, a summary dict with the ranges, counts,
        label shares and the number of unlabelled records left out).
    """
    labelled = [r for r in records if r.get("label")]
    freqs = {r.get("freq") or "W" for r in labelled}
    if len(freqs) > 1:
        raise ValueError(f"the records mix period lengths {sorted(freqs)}; train on one frequency at a time")
    freq = freqs.pop() if freqs else "W"
    purge = config.labels.F
    ranges = latest_ranges([r["cutoff"] for r in labelled], test_periods, val_periods, purge=purge, freq=freq)
    train, val, test = split_by_cutoff(labelled, ranges["train"], ranges["val"], ranges["test"], horizon=purge,
                                       freq=freq)
    gap = split_by_cutoff(labelled, ranges["gap"], None, None, horizon=purge, freq=freq)[0] if ranges["gap"] else []
    parts = {"train": train, "validation": val, "test": test, "refit_extra": gap}
    summary = {"ranges": {k: list(v) if v else None for k, v in ranges.items()}, "freq": freq, "purge": purge,
               "records": {k: len(v) for k, v in parts.items()}, "unlabelled_left_out": len(records) - len(labelled),
               "label_share": {k: _shares(v) for k, v in parts.items() if v}}
    return parts, summary


def records_for_training(config: TrendConfig, *, records: str | None = None, sales: str | None = None,
                         preset: str | None = None, prepare_options: dict | None = None,
                         progress: bool = True) -> list[dict]:
    """The one table of `trendnlp train`: a records file read and labelled, or an order log prepared, both with
    the config's history and label rule.

    Args:
        config: the run's config (sales.history, the label rule).
        records: a records file (.jsonl, .csv, .parquet) or a folder of such parts; or
        sales: an order log, prepared with `preset` and `prepare_options` (as for `trendnlp prepare`).
        progress: progress bars and prepare's summary.
    Returns:
        normalised records.
    """
    if records:  # a file, or a folder of parts (`prepare --num-shards`)
        from trendnlp.data.record_files.parts import read_parts

        recs = read_parts(records, history=config.sales.history, rule=config.labels.rule())
        require_channels(config.sales, carried_channels(recs), str(records))  # before the run folder is written
        return recs
    from trendnlp.data.orderlog.presets import prepare_log

    opts = {**(prepare_options or {}), "history": config.sales.history, "rule": config.labels.rule()}
    horizon = opts.get("horizon") or 4
    if config.labels.F > horizon:
        raise ValueError(f"labels.F={config.labels.F} looks further ahead than --horizon {horizon}; raise "
                         "--horizon or lower labels.F")
    result = prepare_log(sales, preset=preset, progress=progress, **opts)
    if progress:
        print(result.summary())
    require_channels(config.sales, carried_channels(result.records), str(sales))  # before the run folder is written
    return result.records


def _shares(records: Sequence[dict]) -> dict[str, float]:
    counts = Counter(r["label"] for r in records)
    return {k: round(v / len(records), 4) for k, v in sorted(counts.items())}


@exclusive_output(lambda a: (a["output_dir"], "--output-dir", rank_tag()))  # the split files too, not only training
def train_on_records(records: Sequence[dict], config: TrendConfig, output_dir: str | Path, *,
                     test_periods: int = DEFAULT_TEST_PERIODS, val_periods: int = DEFAULT_VAL_PERIODS,
                     progress: bool = True, **train_options) -> dict:
    """Split records by cutoff, train `config` on them, score test and write DIR/metrics.json.

    Args:
        records: labelled, normalised records (`prepare`'s output or `read_records`), one table for everything.
        config: the model and training config; its `data` file paths are replaced by the split written here.
        output_dir: run folder: data/ (the split), model/ (the saved model), metrics.json, and training's files.
        test_periods, val_periods: cutoffs in the test and validation parts (3 and 3, as in the benchmark protocol).
        progress: progress bars and per-epoch lines.
        **train_options: passed to `training.train` (resume, resume_anyway, init_from).
    Returns:
        training.train's result dict plus `split` (the summary of `split_latest`) and `metrics_path`.

    >>> result = train_on_records(records, TrendConfig.from_yaml("configs/default.yaml"), "runs/x")  # doctest: +SKIP
    >>> result["split"]["ranges"]["test"]  # doctest: +SKIP
    ['2023-11-12', '2023-11-26']
    """
    from trendnlp.training.loop import train

    start = time.perf_counter()
    out = Path(output_dir)
    require_channels(config.sales, carried_channels(records), "records")  # a fed channel must not train as zeros
    parts, summary = split_latest(records, config, test_periods, val_periods)
    for name in ("train", "validation", "test"):
        if not parts[name]:
            raise ValueError(f"the {name} part of the split is empty ({summary['ranges']}); give a longer order "
                             "log or fewer --test-periods / --val-periods")
    if progress:
        r, n = summary["ranges"], summary["records"]
        print(f"split by cutoff ({summary['purge']}-period purges): train {n['train']:,} records "
              f"({r['train'][0]} … {r['train'][1]}), validation {n['validation']:,} ({r['val'][0]} … {r['val'][1]}), "
              f"test {n['test']:,} ({r['test'][0]} … {r['test'][1]})")
    paths = write_splits({k: v for k, v in parts.items() if v or k != "refit_extra"}, out / "data")
    raw = config.to_dict()
    # refit_extra: the records of the purge gap, which a refit on every label known before test adds
    raw["data"].update(train=paths["train"], validation=paths["validation"], test=paths["test"],
                       refit_extra=paths.get("refit_extra", ""))
    # this call holds the run folder's lock: the loop runs undecorated (an output is locked once)
    result = train.__wrapped__(TrendConfig.from_dict(raw, source="train_on_records"), out, progress=progress,
                               **train_options)
    if not result.get("is_main_process", True):
        return result
    metrics = {"model_dir": result["model_dir"], "kind": config.model.kind, "split": summary,
               "best_epoch": result["best_epoch"], "validation": result["validation"], "test": result["test"],
               "blend_weight": result.get("blend_weight"), "branches": result.get("branches"),
               "seconds": round(time.perf_counter() - start, 1)}
    write_json(out / "metrics.json", metrics)
    return {**result, "split": summary, "metrics_path": str(out / "metrics.json")}
