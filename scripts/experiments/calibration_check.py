"""Do validation-fitted logit offsets (train.calibrate_bias) carry over to unseen cutoffs? A validation-only check.

For a saved model (its offsets set to zero) and for the sales gradient-boosting baseline, offsets are fitted on
all validation cutoffs but one and scored on the held-out cutoff, for each cutoff in turn. With --test, the
offsets fitted on all of validation are also applied to the test split (for the report only; choose nothing
from it).

    python scripts/experiments/calibration_check.py --model runs/benchmark/runs/fused_concat/seed_0/model \
        --data runs/benchmark/data [--test]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from trendnlp.benchmark.baselines import SalesHGBBaseline
from trendnlp.model.boosting_features import sales_calendar_matrix
from trendnlp.model.calibration import biased_scores, fit_logit_bias, macro_f1_from_predictions
from trendnlp.labels import LABELS, LabelRule
from trendnlp.evaluation.metrics import render_table
from trendnlp.data.record_files.records import read_records


def model_probs(model_dir: str, parts: dict[str, list[dict]]) -> dict[str, np.ndarray]:
    from trendnlp.model.classifier import TrendClassifier

    clf = TrendClassifier.from_pretrained(model_dir)
    clf.logit_bias.zero_()
    order = [clf.labels.index(lab) for lab in LABELS]  # columns in LABELS order, as the baseline's
    return {k: clf.predict_proba(v, batch_size=256)[:, order] for k, v in parts.items()}


def hgb_probs(train: list[dict], parts: dict[str, list[dict]], labels: list[str]) -> dict[str, np.ndarray]:
    hgb = SalesHGBBaseline(LabelRule(), seed=0).fit(train, parts["validation"])
    order = [list(hgb.model_.classes_).index(lab) for lab in labels]
    return {k: hgb.model_.predict_proba(sales_calendar_matrix(v, hgb.rule))[:, order] for k, v in parts.items()}


def _fmt(bias: np.ndarray) -> str:
    return " ".join(f"{float(v):+.2f}" for v in bias)


def rows_for(name: str, probs: dict, y: dict, cutoffs: np.ndarray, with_test: bool) -> list[list[str]]:
    def f1(p, yy, b):
        return macro_f1_from_predictions(yy, biased_scores(p, b).argmax(1), p.shape[1])

    pv, yv, rows = probs["validation"], y["validation"], []
    for held in np.unique(cutoffs):
        fit, out = cutoffs != held, cutoffs == held
        b = fit_logit_bias(pv[fit], yv[fit])
        rows.append([name, f"held-out validation {held}", _fmt(b),
                     f"{f1(pv[out], yv[out], 0):.4f}", f"{f1(pv[out], yv[out], b):.4f}"])
    if with_test:
        b = fit_logit_bias(pv, yv)
        rows.append([name, "test (offsets from all validation)", _fmt(b),
                     f"{f1(probs['test'], y['test'], 0):.4f}", f"{f1(probs['test'], y['test'], b):.4f}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a saved model folder")
    p.add_argument("--data", required=True, help="folder with train/validation/test.parquet (trendnlp benchmark's "
                                                "OUT/data)")
    p.add_argument("--test", action="store_true", help="also apply the validation offsets to test")
    args = p.parse_args(argv)
    names = ["train", "validation"] + (["test"] if args.test else [])
    recs = {k: read_records(str(Path(args.data) / f"{k}.parquet")) for k in names}
    parts = {k: v for k, v in recs.items() if k != "train"}
    labels = list(LABELS)
    y = {k: np.array([labels.index(r["label"]) for r in v]) for k, v in parts.items()}
    cutoffs = np.array([r["cutoff"] for r in parts["validation"]])
    rows = rows_for("model", model_probs(args.model, parts), y, cutoffs, args.test)
    rows += rows_for("sales_hgb", hgb_probs(recs["train"], parts, labels), y, cutoffs, args.test)
    print(render_table(["predictor", "scored on", "offsets", "macro-F1 raw", "macro-F1 offsets"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
