"""Score one trained model the way `trendnlp benchmark` scores its rows: test and new-product macro-F1, and the
`ensemble` row (the model x sales HGB, weight and offsets fitted on validation). For a model trained outside a
benchmark run, e.g. a tuning run with another config, on the split files a benchmark run wrote.

    python scripts/ensemble_check.py --model runs/tune/runs/base_fused_concat_s0/model --data runs/benchmark/data
"""
from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a trained model folder")
    p.add_argument("--data", required=True, help="folder with train/validation/test.parquet (with first_sale)")
    p.add_argument("--seed", type=int, default=0, help="random_state of the boosting baseline")
    args = p.parse_args(argv)
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    from trendnlp.benchmark import run as bm
    from trendnlp.benchmark.baselines import run_baselines
    from trendnlp.data.records import read_records
    from trendnlp.labels import LABELS
    from trendnlp.model.calibration import macro_f1_from_predictions
    from trendnlp.model.classifier import TrendClassifier

    torch.set_num_threads(1)
    parts = {k: read_records(f"{args.data}/{k}.parquet") for k in ("train", "validation", "test")}
    mask = bm.new_product_mask(parts["test"])
    clf = TrendClassifier.from_pretrained(args.model)
    hgb: dict = {}
    with threadpool_limits(limits=1):
        run_baselines(parts["train"], parts["validation"], parts["test"], clf.config.labels.rule(), seed=args.seed,
                      progress=False, names=["sales_hgb"], probs_out=hgb)
    probs = {k: clf.predict_proba(parts[k], batch_size=256) for k in ("validation", "test")}
    y = np.array([LABELS.index(r["label"]) for r in parts["test"]])
    pred = probs["test"].argmax(1)
    out = {"model_test_macro_f1": macro_f1_from_predictions(y, pred, len(LABELS))}
    if mask is not None:
        out["model_new_product_macro_f1"] = macro_f1_from_predictions(y[mask], pred[mask], len(LABELS))
    row = bm.ensemble_row({"name": "model", "runs": [{"seed": args.seed, "probs": probs}]}, hgb["sales_hgb"],
                          parts, mask)
    out.update({f"ensemble_{k}": row[k] for k in ("macro_f1", "val_macro_f1", "slice_macro_f1") if k in row},
               ensemble_weight=row["runs"][0]["weight_fused"])
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
