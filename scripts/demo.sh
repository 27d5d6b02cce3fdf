#!/usr/bin/env bash
# The main job on the bundled samples, from nothing: install into ./.venv, then
#   1. train from the raw order log (+ product texts + reviews) in data_samples/: records, a split by cutoff
#      (test = the newest 3 weeks, validation = the 3 before them), the shipped MiniLM (LoRA) + LSTM and the
#      LightGBM branch, blended on validation -> runs/demo/model, runs/demo/metrics.json
#   2. evaluate on the held-out test weeks (metrics table, confusion matrix PNG)
#   3. label the whole sample catalog -> runs/demo/labels.csv
#   4. label every active product of the order log as of its last complete week -> runs/demo/today.csv
#   5. explain a few test records (JSONL + HTML) -> runs/demo/why.jsonl, runs/demo/why.html
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
T=.venv/bin/trendnlp
LOG=(--sales data_samples/orders.csv --texts data_samples/products.csv --reviews data_samples/reviews.csv)
$T train "${LOG[@]}" --output-dir runs/demo "$@"
$T evaluate --model runs/demo/model --data runs/demo/data/test.parquet --out runs/demo/eval
$T label --model runs/demo/model --input data_samples/catalog.jsonl --output runs/demo/labels.csv --no-resume
$T label --model runs/demo/model "${LOG[@]}" --output runs/demo/today.csv --no-resume
$T explain --model runs/demo/model --input runs/demo/data/test.parquet --limit 5 --output runs/demo/why.jsonl \
  --html runs/demo/why.html
