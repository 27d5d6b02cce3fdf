#!/usr/bin/env bash
# Create ./.venv (if missing) and install trendnlp with its dev extra, every optional extra (serve, explain, onnx,
# forecast) and the docs extra (MkDocs).
# torch==2.13.0 goes in first: it is the local CPU wheel here, so nothing later pulls a CUDA build.
# Elsewhere set TORCH_SPEC (e.g. TORCH_SPEC="torch" for your platform's default build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.trendnlp-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "$TORCH_SPEC"
  .venv/bin/python -m pip install -q -e ".[dev,all,docs]"
  touch "$stamp"
fi
