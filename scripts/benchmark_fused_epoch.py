"""What a fused training epoch costs against a sales-only one (a reproducible experiment): prints a table.

The benchmark config (configs/benchmark_online_retail.yaml) trains, each in its own process on one thread, two
epochs of the same records in three ways: sales only (text.enabled=false), fused with LoRA (the config), and
fused with the encoder frozen (text.finetune=off, whose pooled embeddings are cached: each distinct text is
encoded once per run). Per epoch it reports the process CPU seconds of the training steps (time.process_time
between optimizer steps, so it counts this process's work, not the waiting that other jobs on a shared
machine cause), their wall seconds, and the ratio of CPU seconds to the sales-only epoch. Validation is not
timed. The records: every cutoff of a seeded sample of --fraction of the products of --train (all products
with 1.0), so texts repeat across cutoffs as in the full split, and the same products' validation records.

Usage:
    python scripts/benchmark_fused_epoch.py --train runs/benchmark/data/train.parquet \
        --validation runs/benchmark/data/validation.parquet [--fraction 0.1] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = {"sales only": ["text.enabled=false"], "fused, LoRA": [], "fused, frozen encoder": ["text.finetune=off"]}


def subset(files: dict[str, str], fraction: float, work: Path, seed: int = 0) -> dict[str, int]:
    """Every record of a seeded sample of `fraction` of the train file's products, from each file; written to
    work/<name>.parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    products = sorted(set(pq.read_table(files["train"], columns=["product_id"]).column("product_id").to_pylist()))
    keep = pa.array(np.random.default_rng(seed).choice(products, max(1, round(fraction * len(products))),
                                                       replace=False).tolist())
    sizes = {}
    for name, path in files.items():
        table = pq.read_table(path)
        table = table.filter(pc.is_in(table.column("product_id"), value_set=keep))
        pq.write_table(table, work / f"{name}.parquet")
        sizes[name] = table.num_rows
    return sizes


def worker(config_path: str, overrides: list[str], out: str) -> dict:
    """Two epochs in `out`; CPU and wall seconds of each epoch's optimizer steps."""
    import torch

    from trendnlp.config import TrendConfig
    from trendnlp.training import train

    torch.set_num_threads(1)
    config = TrendConfig.from_yaml(config_path, overrides=overrides)
    cpu, wall = [time.process_time()], [time.perf_counter()]

    def on_step(step, model, accelerator):
        cpu.append(time.process_time())
        wall.append(time.perf_counter())

    result = train(config, out, progress=False, on_step=on_step)
    epochs, start = [], 0
    for h in result["history"]:
        end = h["step"]  # steps up to the end of this epoch; the first gap includes the first step's setup
        epochs.append({"steps": end - start, "cpu_s": cpu[end] - cpu[start], "wall_s": wall[end] - wall[start],
                       "texts_per_record": h.get("texts_per_record"),
                       "val_macro_f1": h["validation"]["macro_f1"]})
        start = end
    return {"epochs": epochs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True, help="prepared train records (e.g. OUT/data/train.parquet)")
    p.add_argument("--validation", required=True, help="prepared validation records")
    p.add_argument("--config", default=str(REPO / "configs/benchmark_online_retail.yaml"))
    p.add_argument("--fraction", type=float, default=0.1, help="share of the products whose records train")
    p.add_argument("--work", default=None, help="folder for the runs (default: a temporary folder)")
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        config, overrides, out = args.worker
        print(json.dumps(worker(config, json.loads(overrides), out)))
        return 0
    work = Path(args.work or tempfile.mkdtemp(prefix="trendnlp-fused-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = subset({"train": args.train, "validation": args.validation}, args.fraction, work)
    load0 = os.getloadavg()
    rows = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    for name, sets in MODES.items():
        overrides = [*sets, "train.epochs=2", "train.save_steps=0", "train.log_with=none",
                     f"data.train={work / 'train.parquet'}", f"data.validation={work / 'validation.parquet'}", "data.test="]
        out = work / name.replace(" ", "_").replace(",", "")
        done = subprocess.run([sys.executable, __file__, "--train", args.train, "--validation", args.validation,
                               "--worker", args.config, json.dumps(overrides), str(out)],
                              stdout=subprocess.PIPE, text=True, env=env)
        if done.returncode:
            raise SystemExit(f"the {name!r} run failed (exit {done.returncode})")
        rows[name] = json.loads(done.stdout.strip().splitlines()[-1])["epochs"]
        print(f"  {name}: " + ", ".join(f"epoch {i + 1} {e['cpu_s']:.1f} CPU s" for i, e in enumerate(rows[name])),
              flush=True)
    load1 = os.getloadavg()
    base = {i: e["cpu_s"] for i, e in enumerate(rows["sales only"])}
    print(f"\n{sizes['train']:,} train / {sizes['validation']:,} validation records ({args.fraction:g} of the "
          f"products of {Path(args.train).name}), "
          f"{Path(args.config).name}, 1 thread, {platform.machine()}, {os.cpu_count()} CPUs; load average "
          f"{load0[0]:.1f} before, {load1[0]:.1f} after")
    print("| model | epoch | steps | CPU s | wall s | CPU vs sales only | distinct texts per record in its batch | val macro-F1 |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, epochs in rows.items():
        for i, e in enumerate(epochs):
            tpr = "" if e["texts_per_record"] is None else f"{e['texts_per_record']:.3f}"
            print(f"| {name} | {i + 1} | {e['steps']} | {e['cpu_s']:.1f} | {e['wall_s']:.1f} | "
                  f"{e['cpu_s'] / base[i]:.2f} | {tpr} | {e['val_macro_f1']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
