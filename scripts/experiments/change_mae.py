"""MAE of a model's `expected_change` (fusion.change_head) against the label rule's true `change`, beside a
persistence forecast (change = 0), on labelled record files.

    python scripts/experiments/change_mae.py --model runs/x/model --data runs/or/validation.parquet runs/or/test.parquet
"""
from __future__ import annotations

import argparse

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a model folder trained with fusion.change_head=true")
    p.add_argument("--data", nargs="+", required=True, help="record files with future_sales")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    from trendnlp.data.record_files.records import read_records
    from trendnlp.model.classifier import TrendClassifier

    torch.set_num_threads(args.threads)
    clf = TrendClassifier.from_pretrained(args.model)
    rule = clf.config.labels.rule()
    print("| data | records | MAE expected_change | MAE persistence (0) | correlation |\n|---|---:|---:|---:|---:|")
    for path in args.data:
        recs = [r for r in read_records(path) if r["future_sales"]]
        true = np.array([rule.change(r["sales"], r["future_sales"]) for r in recs])
        pred = clf.predict_change(recs, batch_size=512)
        print(f"| {path} | {len(recs):,} | {np.abs(pred - true).mean():.4f} | {np.abs(true).mean():.4f} | "
              f"{np.corrcoef(pred, true)[0, 1]:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
