"""Batch-labeling throughput and memory on an Online Retail catalog (a reproducible experiment, not a feature).

Configurations, each in its own subprocess, which reports its own peak RSS (VmHWM of its address space; the
rusage of a child would also count the driver's memory, inherited across fork + exec on Linux):
    (a) bare encoder   the base AutoModel's plain forward over one text per catalog row (no dedup), length-sorted,
                       dynamically padded batches, inference_mode; no LSTM, head, validation or IO. Tokenizing
                       is timed apart and not counted, so (a) is a ceiling for the text encoder alone.
    (b) label fp32     trendnlp.inference.labeling.label_file: streaming read + validation, window-wide text dedup,
                       length-sorted dynamic padding, LoRA merged, big head batches, atomic parts + merge.
    (c) label bf16     the same under CPU bf16 autocast.
    (d) naive loop     records one batch at a time in file order, padded to max_length, LoRA unmerged, no dedup.
Then `label` fp32 on a small and a large catalog (the catalog repeated with new product ids, stream-written)
to show that peak memory does not grow with the catalog.

Backends (--backends; backends.py below): torch fp32, torch bf16, onnx fp32, onnx int8 through `label_file`
on 20,000 Online Retail records (the prepared split files, --or-records) and on 20,000 data_samples-style records
with reviews (longer texts, generated in chunks by scripts/make_samples.py's process and stream-written):
rows/s, peak RSS, label agreement and max probability difference against torch fp32; then each backend on a
100k- and a 1M-row catalog (Online Retail repeated with new product ids: texts repeat, so the text cache
makes this a cheap check of memory, not of speed). The models need their ONNX graphs (trendnlp export
--format onnx --int8).

Usage:
    python scripts/benchmark_labeling.py --data online_retail.parquet \
        [--model runs/x/model] [--rows 20000] [--small-rows 100000] [--large-rows 1000000] [--work DIR]
    python scripts/benchmark_labeling.py --backends --or-model DIR --long-model DIR --or-records FILE [--threads 1]
Without --model an untrained TrendClassifier is built from configs/default.yaml (the shipped MiniLM):
fine for throughput, meaningless for accuracy.
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


# ---------------------------------------------------------------------------------------------
# workers: one configuration each, printing one JSON line
# ---------------------------------------------------------------------------------------------
def worker(args: argparse.Namespace) -> dict:
    import torch

    from trendnlp.model.load import load_model

    if args.worker == "encoder":
        return _bare_encoder(args)
    t0 = time.perf_counter()
    model = load_model(args.model, args.backend,
                       **({"merge_lora": args.worker != "naive"} if args.backend == "torch" else {}))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.worker == "label":
        from trendnlp.inference.labeling import label_file

        summary = label_file(model, args.input, args.output, batch_size=args.batch_size, window=args.window,
                             dtype=args.dtype, text_cache=args.text_cache, resume=False, progress=False,
                             backend=args.backend)
        rows = summary["rows_written"]
        extra = {"texts_encoded": summary["texts_encoded"], "texts_cached": summary["texts_cached"]}
    else:
        rows, extra = _naive_loop(model, args), {}
    return {"rows": rows, "seconds": time.perf_counter() - t0, "load_s": load_s, "threads": torch.get_num_threads(),
            **extra}


def _bare_encoder(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from trendnlp.config import TrendConfig
    from trendnlp.data.inputs.features import build_text
    from trendnlp.data.record_files.records import read_records
    from trendnlp.model.base_models import load_base_model, load_tokenizer

    cfg = TrendConfig.from_dict(json.loads((Path(args.model) / "config.json").read_text())["config"])
    texts = [build_text(r, cfg.text) for r in read_records(args.input, history=cfg.sales.history)]
    texts = [t for t in texts if t]  # rows without text cost the encoder nothing in `label` either
    base, tok = load_base_model(cfg.text.base_model).eval(), load_tokenizer(cfg.text.base_model)
    t0 = time.perf_counter()
    ids = tok(texts, truncation=True, max_length=cfg.text.max_length, return_attention_mask=False,
              return_token_type_ids=False)["input_ids"]
    batches = []
    order = np.argsort([len(x) for x in ids], kind="stable")
    for s in range(0, len(order), args.batch_size):
        pos = order[s:s + args.batch_size]
        width = max(len(ids[u]) for u in pos)
        x, m = torch.full((len(pos), width), tok.pad_token_id), torch.zeros((len(pos), width), dtype=torch.long)
        for j, u in enumerate(pos):
            x[j, :len(ids[u])], m[j, :len(ids[u])] = torch.tensor(ids[u]), 1
        batches.append((x, m))
    tokenize_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x, m in batches:
            base(input_ids=x, attention_mask=m)
    return {"rows": len(texts), "seconds": time.perf_counter() - t0, "tokenize_s": tokenize_s,
            "threads": torch.get_num_threads()}


def _naive_loop(model, args: argparse.Namespace) -> int:
    import pandas as pd
    import torch

    from trendnlp.data.record_files.records import validate_rows
    from trendnlp.data.record_files.io import iter_raw_rows

    collate = model.make_collator(dedup=False, pad_to_max_length=True)
    c = model.config
    rows = validate_rows(iter_raw_rows(args.input), source=args.input, history=c.sales.history, rule=c.labels.rule())
    out, batch = [], []

    def flush():
        b = collate(batch)
        b.pop("labels", None)
        probs = torch.softmax(model(**b)["logits"].float(), -1).numpy()
        out.extend((r["product_id"], r["cutoff"], model.labels[p.argmax()], *p.tolist()) for r, p in zip(batch, probs))
        batch.clear()

    with torch.inference_mode():
        for _, rec in rows:
            batch.append(rec)
            if len(batch) == args.batch_size:
                flush()
        if batch:
            flush()
    cols = ["product_id", "cutoff", "label"] + [f"p_{n}" for n in model.labels]
    pd.DataFrame(out, columns=cols).to_parquet(args.output, index=False)
    return len(out)


def _peak_rss_mib() -> float:
    """Peak resident memory of this process's own address space (Linux VmHWM; elsewhere ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def run_worker(mode: str, model: str, inp: Path, out: Path, args: argparse.Namespace, **extra) -> dict:
    """Run one configuration in a fresh interpreter; returns its JSON result plus its own peak RSS."""
    cmd = [sys.executable, __file__, "--worker", mode, "--model", model, "--input", str(inp), "--output", str(out),
           "--batch-size", str(args.batch_size), "--window", str(args.window)]
    cmd += [a for k, v in extra.items() for a in (f"--{k}", str(v))]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONWARNINGS": "ignore::FutureWarning"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, env=env, text=True)
    if proc.returncode:
        raise SystemExit(f"benchmark worker {mode} failed (exit {proc.returncode}); command: {' '.join(cmd)}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["rows_per_s"] = result["rows"] / result["seconds"]
    print(f"  {mode:8s} {extra or ''} {result['rows']:>9,} rows  {result['rows_per_s']:8.1f} rows/s  "
          f"{result['peak_rss_mib']:7.0f} MiB", flush=True)
    return result


def build_model(config: Path, records: list[dict], directory: Path) -> str:
    import torch

    from trendnlp.config import TrendConfig
    from trendnlp.model.classifier import TrendClassifier

    torch.manual_seed(0)
    model = TrendClassifier(TrendConfig.from_yaml(config)).fit_feature_scaling(records)
    model.save_pretrained(directory)
    return str(directory)


def main(argv: list[str] | None = None) -> int:
    from trendnlp.inference.labeling_args import TEXT_CACHE  # light: the label command's default

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="Online Retail order log, e.g. online_retail.parquet (read in place; "
                   "the file: docs/benchmark.md); needed without --backends")
    p.add_argument("--model", default=None, help="saved model folder; default: untrained, from --config")
    p.add_argument("--config", default=str(REPO / "configs/default.yaml"), help="config for the untrained model")
    p.add_argument("--rows", type=int, default=20_000, help="catalog rows for (a)-(d)")
    p.add_argument("--small-rows", type=int, default=100_000, help="small catalog of the memory comparison")
    p.add_argument("--large-rows", type=int, default=1_000_000, help="large catalog (0: skip the comparison)")
    p.add_argument("--batch-size", type=int, default=64, help="texts (or naive records) per encoder pass")
    p.add_argument("--window", type=int, default=4096, help="label_file read-ahead window")
    p.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS per worker (0: torch's default)")
    p.add_argument("--work", default=None, help="scratch folder (default: a new temp dir)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--input", default=None, help=argparse.SUPPRESS)
    p.add_argument("--output", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--text-cache", type=int, default=TEXT_CACHE, help=argparse.SUPPRESS)
    p.add_argument("--backend", default="torch", help=argparse.SUPPRESS)
    p.add_argument("--backends", action="store_true", help="the backend table instead of (a)-(d)")
    p.add_argument("--or-model", default=None, help="--backends: model for the Online Retail catalog")
    p.add_argument("--long-model", default=None, help="--backends: model for the long-text (reviews) catalog")
    p.add_argument("--sample-model", default=None, help="--backends: model for data_samples/catalog.jsonl too")
    p.add_argument("--memory-only", action="store_true", help="--backends: only the peak-RSS rows")
    p.add_argument("--long-rows", type=int, default=0, help="--backends: long-text catalog rows (default --rows)")
    p.add_argument("--or-records", default=None, help="--backends: prepared Online Retail records, e.g. a "
                   "benchmark run's data/train.parquet (the first --rows are labelled)")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps({**worker(args), "peak_rss_mib": _peak_rss_mib()}))
        return 0
    if args.backends:
        from labeling_backends import run_backends  # scripts/labeling_backends.py

        return run_backends(args, run_worker)
    if not args.data:
        p.error("give the Online Retail order log with --data FILE")

    import warnings

    from catalog_files import write_catalog  # scripts/catalog_files.py
    from trendnlp.data.orderlog.presets import prepare_preset

    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecation notes, not ours

    work = Path(args.work or tempfile.mkdtemp(prefix="trendnlp-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\nscratch: {work}", flush=True)
    load0 = os.getloadavg()
    records = prepare_preset("online-retail", args.data, progress=False).records
    catalog = work / "catalog.parquet"
    write_catalog(records, args.rows, catalog)
    model = args.model or build_model(Path(args.config), records, work / "model")
    print(f"catalog: {args.rows:,} rows from {len(records):,} Online Retail records; model: {model}", flush=True)

    res = {"(a) bare encoder forward": run_worker("encoder", model, catalog, work / "a.parquet", args),
           "(b) label fp32": run_worker("label", model, catalog, work / "b.parquet", args),
           "(b') label fp32, window dedup only": run_worker("label", model, catalog, work / "b2.parquet", args,
                                                             **{"text-cache": 0}),
           "(c) label bf16": run_worker("label", model, catalog, work / "c.parquet", args, dtype="bf16"),
           "(d) naive loop": run_worker("naive", model, catalog, work / "d.parquet", args)}
    a, d = res["(a) bare encoder forward"]["rows_per_s"], res["(d) naive loop"]["rows_per_s"]
    mem = {}
    if args.large_rows:
        for n in (args.small_rows, args.large_rows):
            path = work / f"catalog_{n}.parquet"
            write_catalog(records, n, path)
            mem[n] = run_worker("label", model, path, work / f"labels_{n}.parquet", args)
            path.unlink()
    load1 = os.getloadavg()

    import torch

    print(f"\nOnline Retail catalog, {args.rows:,} rows; batch {args.batch_size}, window {args.window}; "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, threads/worker {res['(b) label fp32']['threads']}, "
          f"{platform.processor() or platform.machine()}; load average {load0[0]:.1f} before, {load1[0]:.1f} after")
    print("| configuration | rows | seconds | rows/s | vs (a) | vs (d) | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, r in res.items():
        print(f"| {name} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows_per_s']:.1f} | {r['rows_per_s'] / a:.2f} | "
              f"{r['rows_per_s'] / d:.2f} | {r['peak_rss_mib']:.0f} |")
    for n, r in mem.items():
        print(f"| label fp32, {n:,}-row catalog | {r['rows']:,} | {r['seconds']:.1f} | {r['rows_per_s']:.1f} | "
              f"{r['rows_per_s'] / a:.2f} | {r['rows_per_s'] / d:.2f} | {r['peak_rss_mib']:.0f} |")
    enc = res["(a) bare encoder forward"]
    print(f"(a) counts the {enc['rows']:,} rows with text; tokenizing them took another {enc['tokenize_s']:.1f} s.")
    for name, r in list(res.items())[1:4]:
        print(f"{name}: {r['texts_encoded']:,} texts through the encoder, {r['texts_cached']:,} from the cross-window "
              "cache")
    b = res["(b) label fp32"]["rows_per_s"]
    print(f"targets: (b) >= 0.9 x (a): {b / a:.2f} ({'met' if b >= 0.9 * a else 'missed'}); "
          f"(b) >= 3 x (d): {b / d:.2f} ({'met' if b >= 3 * d else 'missed'})", end="")
    if mem:
        (n0, r0), (n1, r1) = mem.items()
        ratio = r1["peak_rss_mib"] / r0["peak_rss_mib"]
        print(f"; peak RSS {n1:,} vs {n0:,} rows: {ratio:.3f} ({'met' if ratio <= 1.1 else 'missed'}, target <= 1.10)")
    else:
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
