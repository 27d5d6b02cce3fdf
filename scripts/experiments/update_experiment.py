"""Does updating a model with the newest weeks (`trendnlp train --init-from`) pay off on Online Retail?

Three models per scenario, each scored on the benchmark's validation and test cutoffs:
    stale    trained on the older cutoffs only
    update   the stale model warm-started (`--init-from`) and trained on the newer cutoffs only
    retrain  trained from scratch on the older and the newer cutoffs together

A newer cutoff may only be used once its label is known: its future (cutoff + 4 weeks) must be over before
the cutoffs it is scored on. The benchmark's split leaves exactly one horizon between the last train cutoff
(2011-08-14, future ending 2011-09-11) and the first validation cutoff (2011-09-11), so no cutoff after
the train range has a future complete by the first validation cutoff. Hence two scenarios:

    purged  stale = train cutoffs 2011-05-29 … 2011-07-17; newer = 2011-07-24 … 2011-08-14 (futures end
            2011-08-21 … 2011-09-11, all by the first validation cutoff); retrain = the benchmark's train set.
            Validation and test are both clean for all three models.
    after   stale = the benchmark's train set; newer = 2011-08-21, 2011-08-28, 2011-09-04 (the cutoffs between train
            and validation; futures end 2011-09-18 … 2011-10-02, before the first test cutoff 2011-10-23).
            Their futures overlap the validation weeks, so only test is clean for update and retrain.

    python scripts/experiments/update_experiment.py --sales online_retail.parquet --out runs/update [--threads 1]
Prints a table and writes OUT/results.json and OUT/results.md.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from trendnlp.config import TrendConfig
from trendnlp.data.orderlog.presets import prepare_preset
from trendnlp.data.record_files.io import write_records
from trendnlp.data.record_files.records import read_records
from trendnlp.data.record_files.split import ONLINE_RETAIL_SPLIT, split_by_cutoff
from trendnlp.training import train

ROOT = Path(__file__).resolve().parents[2]  # the repository: this file is scripts/experiments/
SCENARIOS = {
    "purged": {"older": ("2011-05-29", "2011-07-17"), "newer": ("2011-07-24", "2011-08-14")},
    "after": {"older": ("2011-05-29", "2011-08-14"), "newer": ("2011-08-21", "2011-09-04")},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sales", required=True, help="the raw Online Retail log, e.g. online_retail.parquet (prepared "
                   "with the online-retail preset; the file: docs/benchmark.md)")
    p.add_argument("--config", default=str(ROOT / "configs" / "benchmark_online_retail.yaml"))
    p.add_argument("--out", default="runs/update")
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--set", action="append", default=[], help="config override for every run")
    return p.parse_args(argv)


def parts(sales: str, out: Path) -> dict[str, Path]:
    """Every cutoff range a scenario needs, as a records file: older/newer per scenario, validation, test."""
    records = prepare_preset("online-retail", sales, progress=False).records
    ranges = {f"{name}_{k}": rng for name, sc in SCENARIOS.items() for k, rng in sc.items()}
    ranges.update(validation=ONLINE_RETAIL_SPLIT["val"], test=ONLINE_RETAIL_SPLIT["test"])
    files = {}
    for name, rng in ranges.items():
        files[name] = out / "data" / f"{name}.parquet"
        part, _, _ = split_by_cutoff(records, train=rng, val=None, test=None)
        write_records(part, files[name])
    for name, sc in SCENARIOS.items():  # "all" of a scenario: older and newer together, by cutoff
        both = read_records(files[f"{name}_older"]) + read_records(files[f"{name}_newer"])
        files[f"{name}_all"] = out / "data" / f"{name}_all.parquet"
        write_records(sorted(both, key=lambda r: (r["cutoff"], r["product_id"])), files[f"{name}_all"])
    return files


def run(config: Path, overrides: list[str], train_file: Path, files: dict, out: Path,
        init_from: Path | None = None) -> dict:
    sets = [*overrides, f"data.train={train_file}", f"data.validation={files['validation']}",
            f"data.test={files['test']}"]
    cfg = TrendConfig.from_yaml(config, overrides=sets)
    t0 = time.perf_counter()
    result = train(cfg, out, progress=False, init_from=init_from)
    return {"records": len(pd.read_parquet(train_file, columns=["cutoff"])),
            "cutoffs": sorted(pd.read_parquet(train_file, columns=["cutoff"])["cutoff"].unique().tolist()),
            "seconds": round(time.perf_counter() - t0, 1),
            "train_seconds": round(sum(h["train_seconds"] for h in result["history"]), 1),
            "epochs": result["epochs"], "best_epoch": result["best_epoch"],
            "validation_macro_f1": result["validation"]["macro_f1"], "test_macro_f1": result["test"]["macro_f1"],
            "model": result["model_dir"]}


def table(results: dict) -> str:
    rows = ["| scenario | model | trained on: cutoffs (count, records) | seconds (of which training) "
            "| validation macro-F1 | test macro-F1 |", "|---|---|---|---:|---:|---:|"]
    for name, models in results.items():
        for model, r in models.items():
            span = f"{r['cutoffs'][0]} … {r['cutoffs'][-1]} ({len(r['cutoffs'])}, {r['records']:,})"
            val = f"{r['validation_macro_f1']:.4f}"
            if name == "after" and model != "stale":  # trained on futures that overlap the validation weeks
                val = f"({val}, not clean)"
            rows.append(f"| {name} | {model} | {span} | {r['seconds']:.0f} ({r['train_seconds']:.0f}) | {val} "
                        f"| {r['test_macro_f1']:.4f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    t0 = time.perf_counter()
    files = parts(args.sales, out)
    print(f"prepared and split the records in {time.perf_counter() - t0:.1f} s")
    results: dict = {}
    for name in args.scenarios:
        res = results[name] = {}
        same = [r for sc in results.values() for r in sc.values()
                if r["cutoffs"] == sorted(pd.read_parquet(files[f"{name}_older"], columns=["cutoff"])["cutoff"].unique())]
        # the "after" stale model is the "purged" retrain (the benchmark's train set, same seed): train it once
        res["stale"] = same[0] if same else run(args.config, args.set, files[f"{name}_older"], files,
                                                 out / name / "stale")
        res["update"] = run(args.config, args.set, files[f"{name}_newer"], files, out / name / "update",
                            init_from=Path(res["stale"]["model"]))
        res["retrain"] = run(args.config, args.set, files[f"{name}_all"], files, out / name / "retrain")
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(table({name: res}), flush=True)
    (out / "results.md").write_text(table(results) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
