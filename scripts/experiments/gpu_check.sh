#!/usr/bin/env bash
# One prepared GPU check (issue 13): train the benchmark config for one epoch on CUDA with bf16, export the
# model to ONNX (+ int8), label 100k rows with every backend, print one table. Run from the repository root
# on a CUDA machine with the venv active:  bash scripts/experiments/gpu_check.sh [WORK_DIR]
# Tries `pip install onnxruntime-gpu` into a throwaway venv overlay only if CUDAExecutionProvider is missing;
# without it the ONNX rows run on CPU (the table says which provider ran).
set -euo pipefail
WORK=${1:-runs/gpu_check}
DATA=${DATA:-runs/benchmark/data}   # train/validation/test.parquet of a benchmark run
PY=${PY:-python}
mkdir -p "$WORK"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
$PY - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "no CUDA device: this script is for a GPU machine"
print("GPU:", torch.cuda.get_device_name(0), "bf16:", torch.cuda.is_bf16_supported())
PYEOF
if ! $PY -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
  $PY -m pip install --quiet onnxruntime-gpu || echo "onnxruntime-gpu did not install: ONNX rows run on CPU"
fi

start=$(date +%s)
$PY -m trendnlp train --config configs/benchmark_online_retail.yaml --output-dir "$WORK/train" \
    --set data.train="$DATA/train.parquet" --set data.validation="$DATA/validation.parquet" --set data.test= \
    --set train.epochs=1 --set train.mixed_precision=bf16 --no-progress | tail -n 12
train_s=$(( $(date +%s) - start ))
$PY -m trendnlp export --model "$WORK/train/model" --format onnx --int8

# 100k rows: the Online Retail records repeated with new product ids (stream-written by the benchmark helper)
$PY - "$WORK" "$DATA" <<'PYEOF'
import sys; sys.path.insert(0, "scripts")
from pathlib import Path
import pyarrow.parquet as pq
from catalog_files import write_catalog
work, data = Path(sys.argv[1]), Path(sys.argv[2])
write_catalog(pq.read_table(data / "test.parquet").to_pylist(), 100_000, work / "catalog_100k.parquet")
PYEOF

$PY - "$WORK" "$train_s" <<'PYEOF'
import json, sys, time
from pathlib import Path
import numpy as np, pandas as pd, torch, onnxruntime as ort
from trendnlp.inference.labeling import label_file
work, train_s = Path(sys.argv[1]), int(sys.argv[2])
model, cat = work / "train" / "model", work / "catalog_100k.parquet"
rows, ref = [], None
for name, backend, dtype in [("torch fp32", "torch", "fp32"), ("torch bf16", "torch", "bf16"),
                             ("onnx fp32", "onnx", "fp32"), ("onnx int8", "onnx-int8", "fp32")]:
    out = work / f"labels_{backend}_{dtype}.parquet"
    torch.cuda.reset_peak_memory_stats()
    s = label_file(model, cat, out, batch_size=256, window=16384, dtype=dtype, backend=backend, resume=False,
                   progress=False)
    df = pd.read_parquet(out)
    ref = df if ref is None else ref
    rows.append((name, s["rows_written"], s["rows_per_s"], float((df["label"] == ref["label"]).mean()),
                 torch.cuda.max_memory_allocated() / 2**20))
print(f"\none epoch of Online Retail train on {torch.cuda.get_device_name(0)}, bf16: {train_s} s")
print("onnxruntime providers:", ort.get_available_providers())
print("| backend | rows | rows/s | agreement with torch fp32 | peak CUDA MiB (torch) |\n|---|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r[0]} | {r[1]:,} | {r[2]:.0f} | {r[3]:.4f} | {r[4]:.0f} |")
PYEOF
