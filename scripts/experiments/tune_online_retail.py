"""Reproducible tuning experiments for the Online Retail benchmark, scored on validation only.

The records are prepared and split once (docs/benchmark.md) and cached as Parquet in --cache (outside the repo);
each experiment trains one variant of configs/benchmark_online_retail.yaml with --set overrides and
appends its best validation macro-F1, the per-epoch curve and the time to CACHE/experiments.jsonl.
The test part is never read here.

    python scripts/experiments/tune_online_retail.py --sales online_retail.parquet \
        --name lr3e-3 --variant sales_only --set train.lr=3e-3
    python scripts/experiments/tune_online_retail.py --table          # every experiment so far, as a Markdown table
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from trendnlp.benchmark.args import DEFAULT_CONFIG, VARIANTS
from trendnlp.benchmark.inputs import parse_seeds
from trendnlp.benchmark.run import variant_config
from trendnlp.data.record_files.split import write_splits
from trendnlp.config import TrendConfig, apply_overrides


def cached_splits(sales: str | None, cache: Path) -> dict[str, str]:
    """train/validation Parquet files of the benchmark's split, prepared on first use."""
    paths = {k: str(cache / "data" / f"{k}.parquet") for k in ("train", "validation")}
    if all(Path(p).exists() for p in paths.values()):
        return paths
    if not sales:
        raise SystemExit(f"no cached records in {cache / 'data'}; pass --sales PATH to prepare them once")
    from trendnlp.data.orderlog.presets import prepare_preset
    from trendnlp.data.record_files.split import split_by_cutoff

    train, val, _ = split_by_cutoff(prepare_preset("online-retail", sales).records)
    write_splits({"train": train, "validation": val}, cache / "data")
    return paths


def run(args: argparse.Namespace) -> None:
    cache = Path(args.cache)
    data = {**cached_splits(args.sales, cache), "test": ""}  # never the test part
    raw = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    apply_overrides(raw, args.set)
    TrendConfig.from_dict(raw)  # fail on a bad override before any training
    from trendnlp.training import train

    for seed in parse_seeds(args.seeds):
        config = variant_config(raw, args.variant, seed, data)
        out = cache / "runs" / f"{args.name}_{args.variant}_s{seed}"
        t0 = time.perf_counter()
        result = train(config, out, progress=not args.no_progress)
        row = {"name": args.name, "variant": args.variant, "seed": seed, "overrides": args.set,
               "val_macro_f1": result["validation"]["macro_f1"], "best_epoch": result["best_epoch"],
               "val_curve": [round(h["validation"]["macro_f1"], 4) for h in result["history"]],
               "train_seconds": round(sum(h["train_seconds"] for h in result["history"]), 1),
               "seconds": round(time.perf_counter() - t0, 1)}
        with (cache / "experiments.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row))


def table(cache: Path) -> str:
    rows = [json.loads(line) for line in (cache / "experiments.jsonl").read_text().splitlines() if line.strip()]
    out = ["| experiment | variant | overrides | seed | val macro-F1 | best epoch | curve | seconds |",
           "|---|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        out.append(f"| {r['name']} | {r['variant']} | {' '.join(r['overrides']) or '(config)'} | {r['seed']} | "
                   f"{r['val_macro_f1']:.4f} | {r['best_epoch']} | {' '.join(f'{v:.3f}' for v in r['val_curve'])} | "
                   f"{r['seconds']:.0f} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sales", default=None, help="Online Retail order log (needed on the first run only)")
    p.add_argument("--cache", default="/tmp/trendnlp_tune", help="prepared records, runs and experiments.jsonl")
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--name", default="baseline", help="experiment name in the table")
    p.add_argument("--variant", default="fused_gated", choices=list(VARIANTS))
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--seeds", default="0")
    p.add_argument("--table", action="store_true", help="print the experiments so far and exit")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice); 1 on a "
                   "busy machine, where spinning OpenMP threads slow small matrix products down badly")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.table:
        print(table(Path(args.cache)))
    else:
        run(args)


if __name__ == "__main__":
    main()
