#!/usr/bin/env bash
# The main job on the bundled samples, from nothing: install into ./.venv, then
#   1. prepare records from the raw order log (+ product texts + reviews) in data_samples/
#   2. fine-tune the shipped MiniLM (LoRA) + LSTM on data_samples/{train,val}.jsonl -> runs/demo/model
#   3. evaluate on data_samples/test.jsonl (metrics table, confusion matrix PNG)
#   4. label the whole sample catalog -> runs/demo/labels.csv
#   5. label every active product of the order log as of its last complete week -> runs/demo/today.csv
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
T=.venv/bin/trendnlp
$T prepare --sales data_samples/orders.csv --texts data_samples/products.csv --reviews data_samples/reviews.csv \
  --out runs/demo/records.parquet
$T train --config configs/default.yaml --output-dir runs/demo "$@"
$T evaluate --model runs/demo/model --data data_samples/test.jsonl --out runs/demo/eval
$T label --model runs/demo/model --input data_samples/catalog.jsonl --output runs/demo/labels.csv --no-resume
$T label --model runs/demo/model --sales data_samples/orders.csv --texts data_samples/products.csv \
  --reviews data_samples/reviews.csv --output runs/demo/today.csv --no-resume
