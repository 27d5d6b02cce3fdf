"""`trendnlp label` options, kept free of heavy imports (torch, pandas) so `trendnlp label --help` is quick."""
from __future__ import annotations

import argparse

from trendnlp.options import POSITIVE

UNCERTAIN = "uncertain"  # the label of a row whose top probability is below --min-confidence
BATCH_SIZE = 64  # distinct texts per text-encoder pass (label and serve)
WINDOW = 4096  # rows read ahead and scored together; texts are deduplicated over a window
# pooled text embeddings kept across windows or requests (label, serve): a catalog sorted by cutoff meets each
# product's text again a few thousand rows later, a server is asked about the same products again and again
TEXT_CACHE = 16384


def add_arguments(p: argparse.ArgumentParser, input_required: bool = True) -> argparse.ArgumentParser:
    """Add the labeling options to a parser (used by `python -m trendnlp.inference.labeling` and `trendnlp label`,
    where `--input` is optional because `--sales` can replace it)."""
    p.add_argument("--model", required=True, help="saved model folder (TrendClassifier.save_pretrained)")
    p.add_argument("--input", required=input_required, help="records file: .jsonl, .csv or .parquet")
    p.add_argument("--output", required=True, help="result file: .csv, .jsonl or .parquet")
    p.add_argument("--batch-size", type=POSITIVE, default=BATCH_SIZE, help="distinct texts per encoder pass")
    p.add_argument("--window", type=POSITIVE, default=WINDOW, help="rows read ahead; texts are deduplicated per window")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast (needs CPU bf16 support)")
    p.add_argument("--backend", choices=("torch", "onnx", "onnx-int8"), default="torch",
                   help="torch, or onnxruntime on the folder's model.onnx / model.int8.onnx (trendnlp export --format "
                   "onnx [--int8])")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="stop at a bad row, or skip it")
    p.add_argument("--errors", default=None, help="errors file for skipped rows (default <output>.errors.csv)")
    p.add_argument("--no-resume", action="store_true", help="ignore and remove an unfinished run's parts")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--min-confidence", type=float, default=None, metavar="P",
                   help=f"label a row '{UNCERTAIN}' when its top probability is below P (probabilities still written)")
    return p
