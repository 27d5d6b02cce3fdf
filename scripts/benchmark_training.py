"""Training cost on this machine (a reproducible experiment, not a feature): prints two tables.

1. Seconds per optimizer step of configs/default.yaml (the shipped MiniLM with LoRA, fusion, LSTM) on
   data_samples/train.jsonl at batch 16, fp32 against bf16 autocast. Each run trains --steps steps through
   trendnlp.training.train; the step time is the median gap between consecutive optimizer steps after the first
   --warmup steps, so data loading, collation and the optimizer are included and validation is not.
   Also reported: trainable parameters and the size of the exported LoRA adapter.
2. One training epoch on a prepared train split (e.g. Online Retail's, written by `trendnlp benchmark` to
   OUT/data/train.parquet) under --epoch-config, with and without the speed-ups for texts that repeat across
   cutoffs: unique-text dedup in the collator plus the product-grouping sampler, against neither.

3. --scale (scripts/training_scale.py): Arrow-backed training (data.arrow=true) on synthetic records at 100k,
   1M and 5M records, generated streaming into the scratch folder: peak RSS (and its anonymous and file-backed
   parts), Arrow build seconds, seconds to tokenize the distinct texts by `Dataset.map`, and records/s of one
   epoch capped by --max-steps. It uses the tests' tiny random BERT (2 layers, width 32): the table is
   about memory against record count, which the encoder size does not change.

Usage:
    python scripts/benchmark_training.py --scale [--sizes 100000,1000000,5000000] [--max-steps 200] [--work DIR]
    python scripts/benchmark_training.py [--steps 40] [--threads 1] \
        [--epoch-train runs/benchmark/data/train.parquet --epoch-validation runs/benchmark/data/validation.parquet]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def step_times(config, out: Path) -> tuple[list[float], dict, dict]:
    """Train config in out; the wall time of every optimizer step, the train() result and the trained model's
    trainable-parameter report (one pass over the parameter list at the first step, well under a millisecond)."""
    from trendnlp.training import train

    stamps, report = [time.perf_counter()], {}

    def on_step(step, model, accelerator):
        if not report:
            report.update(accelerator.unwrap_model(model).trainable_parameter_report())
        stamps.append(time.perf_counter())

    result = train(config, out, progress=False, on_step=on_step)
    return [b - a for a, b in zip(stamps, stamps[1:])], result, report


def per_step(args: argparse.Namespace, work: Path) -> list[dict]:
    """Table 1: one subprocess per precision (accelerate keeps a single precision per Python process)."""
    import subprocess
    import sys

    rows = []
    for precision in ("no", "bf16"):
        options = {"config": args.config, "set": args.set, "batch_size": args.batch_size, "steps": args.steps,
                   "train": args.train, "validation": args.validation, "warmup": args.warmup}
        code = ("import json, sys; sys.path.insert(0, %r); import benchmark_training as b; "
                "print(json.dumps(b.step_row(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3])))"
                % str(Path(__file__).resolve().parent))
        done = subprocess.run([sys.executable, "-c", code, json.dumps(options), precision,
                               str(work / f"step_{precision}")], capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def step_row(options: dict, precision: str, out: str) -> dict:
    """One row of table 1: --steps optimizer steps at `precision` ("no" or "bf16") in `out`."""
    from trendnlp.config import TrendConfig

    config = TrendConfig.from_yaml(options["config"], overrides=[*options["set"],
        f"train.batch_size={options['batch_size']}", f"train.max_steps={options['steps']}", "train.epochs=100",
        f"train.mixed_precision={precision!r}", "train.save_steps=0", "train.log_with=none", "data.test=",
        f"data.train={options['train']}", f"data.validation={options['validation']}"])
    times, result, report = step_times(config, Path(out))
    measured = times[options["warmup"]:]
    adapter = sum(f.stat().st_size for f in (Path(result["model_dir"]) / "adapter").glob("*.safetensors"))
    return {"precision": "fp32" if precision == "no" else "bf16", "steps": len(measured),
            "median_s": statistics.median(measured), "mean_s": statistics.fmean(measured),
            "adapter_bytes": adapter, **report}


def per_epoch(args: argparse.Namespace, work: Path) -> list[dict]:
    from trendnlp.config import TrendConfig

    rows = []
    for name, fast in (("dedup + product grouping", True), ("neither", False)):
        config = TrendConfig.from_yaml(args.epoch_config, overrides=[*args.set,
            "train.epochs=1", "train.max_steps=0", "train.save_steps=0", "train.log_with=none", "data.test=",
            f"train.dedup_text={str(fast).lower()}", f"train.group_by_product={str(fast).lower()}",
            f"data.train={args.epoch_train}", f"data.validation={args.epoch_validation}"])
        _, result, _ = step_times(config, work / f"epoch_{int(fast)}")
        h = result["history"][0]
        rows.append({"setting": name, "steps": h["step"], "epoch_s": h["train_seconds"],
                     "texts_per_record": h["texts_per_record"], "batch_size": config.train.batch_size,
                     "max_length": config.text.max_length})
    return rows


def scale_table(args: argparse.Namespace) -> int:
    """Table 3 (--scale): peak RSS, build seconds and records/s against the record count."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from training_scale import run_scale

    from trendnlp.evaluation.metrics import render_table

    sizes = [int(x) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_scale(sizes, Path(args.work or tmp), args.max_steps, args.batch_size)
    print(f"\nArrow-backed training, tiny BERT, batch {args.batch_size}, one epoch capped at {args.max_steps} steps, "
          f"1 thread, {platform.machine()}:")
    print(render_table(["records", "distinct texts", "generate s", "Arrow build s", "build records/s",
                        "tokenize s (map)", "peak RSS MiB", "RSS / smallest", "peak anon MiB", "peak file MiB",
                        "records/s"],
                       [[f"{r['n']:,}", f"{r['texts']:,}", f"{r['generate_s']:.1f}", f"{r['build_s']:.1f}",
                         f"{r['n'] / r['build_s']:,.0f}", f"{r['tokenize_s']:.1f}", f"{r['peak_rss_mib']:.0f}",
                         f"{r['peak_rss_mib'] / rows[0]['peak_rss_mib']:.2f}", f"{r['peak_anon_mib']:.0f}",
                         f"{r['peak_file_mib']:.0f}", f"{r['records_per_s']:.0f}"] for r in rows]))
    print("peak RSS is the kernel's high-water mark (VmHWM); anon and file are its parts' own peaks, sampled every "
          "20 ms (file: mapped Arrow pages and shared libraries)")
    ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    print(f"target: peak RSS at {rows[-1]['n']:,} <= 1.3 x at {rows[0]['n']:,}: {ratio:.2f} "
          f"({'met' if ratio <= 1.3 else 'missed'})")
    if args.json:
        Path(args.json).write_text(json.dumps({"scale": rows}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(REPO / "configs/default.yaml"))
    p.add_argument("--train", default=str(REPO / "data_samples/train.jsonl"))
    p.add_argument("--validation", default=str(REPO / "data_samples/val.jsonl"))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per precision (default 40)")
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of the step time (default 5)")
    p.add_argument("--epoch-config", default=str(REPO / "configs/benchmark_online_retail.yaml"))
    p.add_argument("--epoch-train", default=None, help="prepared train records for the epoch table (skipped if unset)")
    p.add_argument("--epoch-validation", default=None, help="prepared validation records (default: --epoch-train)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config override for every run (e.g. text.base_model=PATH)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--work", default=None, help="folder for the runs (default: a temporary folder)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--scale", action="store_true", help="the Arrow scale table instead of tables 1-2")
    p.add_argument("--sizes", default="100000,1000000,5000000", help="--scale: record counts")
    p.add_argument("--max-steps", type=int, default=200, help="--scale: optimizer steps of the capped epoch")
    args = p.parse_args(argv)
    if args.scale:
        return scale_table(args)
    if args.steps <= args.warmup:
        p.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")
    args.epoch_validation = args.epoch_validation or args.epoch_train

    import torch

    from trendnlp.evaluation.metrics import render_table

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        steps = per_step(args, work)
        epochs = per_epoch(args, work) if args.epoch_train else []
    first = steps[0]
    print(f"\nmachine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s)")
    print(f"trainable parameters: {first['trainable']:,} of {first['total']:,} ({first['percent']:.2f}%); "
          f"LoRA adapter {first['adapter_bytes']:,} bytes")
    print(f"\nseconds per optimizer step, {Path(args.config).name}, batch {args.batch_size}, {Path(args.train).name}:")
    print(render_table(["precision", "steps timed", "median s/step", "mean s/step"],
                       [[r["precision"], str(r["steps"]), f"{r['median_s']:.3f}", f"{r['mean_s']:.3f}"]
                        for r in steps]))
    if epochs:
        print(f"\none epoch of {Path(args.epoch_train).name}, {Path(args.epoch_config).name} "
              f"(batch {epochs[0]['batch_size']}, max_length {epochs[0]['max_length']}):")
        print(render_table(["setting", "steps", "epoch s", "texts encoded per record"],
                           [[r["setting"], str(r["steps"]), f"{r['epoch_s']:.1f}",
                             "1.000" if r["texts_per_record"] is None else f"{r['texts_per_record']:.3f}"]
                            for r in epochs]))
    if args.json:
        Path(args.json).write_text(json.dumps({"steps": steps, "epochs": epochs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
