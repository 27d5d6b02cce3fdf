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
# The stamp holds the hash of the pyproject.toml that was installed (read before installing), so an edit made
# while pip runs still triggers the next install.
stamp=.venv/.trendnlp-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $TORCH_SPEC"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "$TORCH_SPEC"
  .venv/bin/python -m pip install -q -e ".[dev,all,docs]"
  echo "$want" > "$stamp"
fi
