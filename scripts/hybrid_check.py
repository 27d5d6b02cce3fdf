"""Score saved neural models, alone and blended with a boosting peer, on a benchmark's split (validation picks).

For each --model (an exported folder, e.g. from scripts/tune_online_retail.py on the same split), this prints
its validation and test macro-F1 (new-product slice too) and the `ensemble` row of `trendnlp benchmark`
(run.ensemble_row: w * neural + (1 - w) * peer, w and the logit offsets chosen on validation only), with the
peer's probabilities read from a benchmark folder's baselines/{peer}_probs_{part}.npy.

    python scripts/hybrid_check.py --data runs/b2/data --baselines runs/b2b/baselines \
        --model runs/b2/runs/y2_all_ep2_fused_gated_s0/model [--model ...] [--peer gbm_all] [--test]

Without --test only validation numbers are printed (use that while choosing).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the benchmark's data/ folder (validation.parquet, test.parquet)")
    p.add_argument("--baselines", required=True, help="a benchmark's baselines/ folder with the peer's probabilities")
    p.add_argument("--model", action="append", required=True, help="exported model folder (repeatable)")
    p.add_argument("--peer", default="gbm_all", help="the boosting row to blend with (default gbm_all)")
    p.add_argument("--test", action="store_true", help="also score test (only once the choices are made)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from trendnlp.benchmark.baselines import slice_score
    from trendnlp.benchmark.run import ensemble_row, new_product_mask
    from trendnlp.data.records import read_records
    from trendnlp.evaluation.metrics import classification_metrics
    from trendnlp.labels import LABELS
    from trendnlp.model.classifier import TrendClassifier

    torch.set_num_threads(args.threads)
    parts = {k: read_records(str(Path(args.data) / f"{k}.parquet")) for k in ("validation", "test")}
    peer = tuple(np.load(Path(args.baselines) / f"{args.peer}_probs_{k}.npy") for k in ("validation", "test"))
    mask = new_product_mask(parts["test"])
    for model_dir in args.model:
        clf = TrendClassifier.from_pretrained(model_dir)
        probs = {k: clf.predict_proba(parts[k], batch_size=256) for k in ("validation", "test")}
        out = {"model": model_dir}
        for k in ("validation", "test") if args.test else ("validation",):
            pred = [LABELS[i] for i in probs[k].argmax(1)]
            m = classification_metrics([r["label"] for r in parts[k]], pred, LABELS)
            out[f"{k}_macro_f1"] = round(m["macro_f1"], 4)
            if k == "test":
                out.update({f"test_{n}": round(v, 4) for n, v in
                            slice_score([r["label"] for r in parts[k]], pred, mask).items()})
        row = ensemble_row({"name": "fused", "runs": [{"seed": 0, "probs": probs}]}, peer, parts, mask,
                           peer=args.peer)
        run = row["runs"][0]
        out.update(ensemble_weight=run["weight_fused"], ensemble_validation_macro_f1=round(run["val_macro_f1"], 4))
        if args.test:
            out.update(ensemble_test_macro_f1=round(run["macro_f1"], 4),
                       ensemble_test_slice_macro_f1=round(run.get("slice_macro_f1", float("nan")), 4))
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
