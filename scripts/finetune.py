"""Fine-tune a TrendClassifier from a YAML config: the same arguments and code path as `trendnlp train`.

    python scripts/finetune.py --config configs/default.yaml --output-dir runs/default
    python scripts/finetune.py --config configs/default.yaml --output-dir runs/default --resume
    python scripts/finetune.py --config configs/default.yaml --output-dir runs/no_dedup \
        --set train.dedup_text=false --set train.group_by_product=false --set train.max_steps=50

Several processes (or GPUs):
    accelerate launch --config_file configs/accelerate_multi_gpu.yaml scripts/finetune.py --config ... --output-dir ...

Epoch timings (train_seconds, seconds_per_step, texts_per_record) are in OUTPUT_DIR/metrics/epoch_{n}.json.
"""
from __future__ import annotations

import sys

from trendnlp.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Run `trendnlp train` with these arguments (sys.argv[1:] when None); returns the exit code."""
    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
