"""The backend table of scripts/benchmark_labeling.py --backends (see that script's docstring).

torch fp32 / torch bf16 / onnx fp32 / onnx int8, each in its own subprocess through `label_file`, on two
20,000-row catalogs: Online Retail (short titles) and data_samples-style records with reviews (long texts);
then each backend on a 100k- and a 1M-row catalog for peak RSS.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
BACKENDS = {"torch fp32": ("torch", "fp32"), "torch bf16": ("torch", "bf16"), "onnx fp32": ("onnx", "fp32"),
            "onnx int8": ("onnx-int8", "fp32")}


def _compare(ref: Path, other: Path) -> tuple[float, float]:
    import numpy as np
    import pandas as pd

    a, b = pd.read_parquet(ref), pd.read_parquet(other)
    assert list(a["product_id"]) == list(b["product_id"])
    cols = [c for c in a.columns if c.startswith("p_")]
    return float((a["label"] == b["label"]).mean()), float(np.abs(a[cols].to_numpy() - b[cols].to_numpy()).max())


def run_backends(args, run_worker) -> int:
    """Print the backend table and the memory rows; returns 0."""
    import pyarrow.parquet as pq

    from catalog_files import write_catalog, write_long_text_catalog, write_or_catalog  # scripts/catalog_files.py

    if not (args.or_model and args.long_model and args.or_records):
        raise SystemExit("--backends needs --or-model and --long-model (folders with model.onnx and model.int8.onnx) "
                         "and --or-records (prepared Online Retail records)")
    import tempfile

    work = Path(args.work or tempfile.mkdtemp(prefix="trendnlp-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\nscratch: {work}", flush=True)
    load0 = os.getloadavg()
    catalogs = {"Online Retail": (args.or_model, work / "or.parquet"),
                "long text (reviews)": (args.long_model, work / "long.parquet")}
    if args.sample_model:  # data_samples/catalog.jsonl as Parquet
        from trendnlp.data.record_files.io import write_records
        from trendnlp.data.record_files.records import read_records

        catalogs["sample catalog"] = (args.sample_model, work / "sample.parquet")
        write_records(read_records(SCRIPTS.parent / "data_samples/catalog.jsonl"), catalogs["sample catalog"][1])
    rows = []
    if args.memory_only:
        catalogs = {}
    else:
        write_or_catalog(args.or_records, args.rows, catalogs["Online Retail"][1])
        t0 = time.perf_counter()
        write_long_text_catalog(args.long_rows or args.rows, catalogs["long text (reviews)"][1])
        print(f"long-text catalog generated in {time.perf_counter() - t0:.1f} s", flush=True)
    for cat, (model, path) in catalogs.items():
        ref = None
        for name, (backend, dtype) in BACKENDS.items():
            out = work / f"{cat[:4].strip()}_{backend}_{dtype}.parquet"
            r = run_worker("label", model, path, out, args, backend=backend, dtype=dtype)
            ref = ref or out
            agree, diff = _compare(ref, out)
            rows.append((cat, name, r, agree, diff))
    mem = []
    records = pq.read_table(args.or_records).to_pylist()
    for n in (args.small_rows, args.large_rows):
        if not n:
            continue
        path = work / f"or_{n}.parquet"
        write_catalog(records, n, path)
        for name, (backend, dtype) in BACKENDS.items():
            mem.append((n, name, run_worker("label", args.or_model, path, work / f"mem_{n}.parquet", args,
                                            backend=backend, dtype=dtype)))
        path.unlink()
    load1 = os.getloadavg()

    import torch

    text_len = {cat: _mean_text_chars(path) for cat, (_, path) in catalogs.items()}
    print(f"\n{args.rows:,} Online Retail rows, {args.long_rows or args.rows:,} long-text rows; batch {args.batch_size}, window {args.window}; {os.cpu_count()} CPUs, "
          f"threads/worker {(rows or mem)[0][2]['threads']}, torch {torch.__version__}, {platform.machine()}; "
          f"load average {load0[0]:.1f} before, {load1[0]:.1f} after")
    if rows:
        print("| catalog | backend | rows/s | vs torch fp32 | peak RSS MiB | label agreement | max prob diff | "
              "texts encoded |\n|---|---|---:|---:|---:|---:|---:|---:|")
    base = {}
    for cat, name, r, agree, diff in rows:
        base.setdefault(cat, r["rows_per_s"])
        print(f"| {cat} ({text_len[cat]:.0f} chars) | {name} | {r['rows_per_s']:.1f} | {r['rows_per_s'] / base[cat]:.2f} | "
              f"{r['peak_rss_mib']:.0f} | {agree:.4f} | {diff:.4f} | {r['texts_encoded']:,} |")
    if mem:
        print("\n| backend | rows | rows/s | peak RSS MiB |\n|---|---:|---:|---:|")
        for n, name, r in mem:
            print(f"| {name} | {n:,} | {r['rows_per_s']:.1f} | {r['peak_rss_mib']:.0f} |")
        for name in BACKENDS:
            rss = {n: r["peak_rss_mib"] for n, nm, r in mem if nm == name}
            if len(rss) >= 2:
                (n0, r0), (n1, r1) = min(rss.items()), max(rss.items())
                print(f"{name}: peak RSS {n1:,} vs {n0:,} rows: {r1 / r0:.3f}")
    long = {name: (r, agree) for cat, name, r, agree, _ in rows if cat.startswith("long")}
    if not long:
        return 0
    speed = long["onnx int8"][0]["rows_per_s"] / long["torch fp32"][0]["rows_per_s"]
    agree = {cat: a for cat, name, _, a, _ in rows if name == "onnx int8"}
    met = speed >= 1.8 and min(agree.values()) >= 0.99
    print(f"target: onnx int8 >= 99% label agreement with torch fp32 on every catalog and >= 1.8x its speed on long "
          f"texts: {', '.join(f'{c} {a:.2%}' for c, a in agree.items())}; {speed:.2f}x ({'met' if met else 'missed'})")
    return 0


def _mean_text_chars(path: Path) -> float:
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["title", "description", "reviews"]).to_pylist()
    return sum(len(r["title"] or "") + len(r["description"] or "") + sum(map(len, r["reviews"] or [])) for r in t) / len(t)
