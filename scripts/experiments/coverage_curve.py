"""Calibration of a saved model on labelled records: ECE / Brier before and after its temperature, a
reliability diagram, and the coverage/accuracy curve of `--min-confidence` (a reproducible experiment).

Usage:
    python scripts/experiments/coverage_curve.py --model runs/or/model --data runs/benchmark/data/test.parquet --out docs/img
Prints markdown tables; writes reliability.png and coverage_accuracy.png to --out.
"""
from __future__ import annotations

import argparse
from pathlib import Path

THRESHOLDS = (0.0, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="saved model folder")
    p.add_argument("--data", required=True, help="labelled records")
    p.add_argument("--out", required=True, help="folder for the two PNGs")
    p.add_argument("--name", default="test", help="name of the data in figure titles")
    args = p.parse_args(argv)

    import numpy as np

    from trendnlp.data.record_files.records import read_records
    from trendnlp.evaluation.plots import plot_coverage_accuracy, plot_reliability_diagram
    from trendnlp.model.calibration import calibration_report, coverage_accuracy
    from trendnlp.model.classifier import TrendClassifier

    clf = TrendClassifier.from_pretrained(args.model)
    recs = read_records(args.data, history=clf.config.sales.history, rule=clf.config.labels.rule())
    y = np.array([clf.labels.index(r["label"]) for r in recs])
    probs = clf.predict_proba(recs, batch_size=256)
    rep = calibration_report(probs, y, float(clf.temperature))
    print(f"{len(recs)} records, temperature {rep['temperature']:.3f}\n")
    print("| | ECE (15 bins) | Brier |\n|---|---:|---:|")
    print(f"| before temperature | {rep['ece_before']:.4f} | {rep['brier_before']:.4f} |")
    print(f"| after temperature | {rep['ece_after']:.4f} | {rep['brier_after']:.4f} |")
    rows = coverage_accuracy(probs, y, THRESHOLDS)
    print("\n| --min-confidence | coverage | records | accuracy |\n|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['min_confidence']:.2f} | {r['coverage']:.1%} | {r['n']} | {r['accuracy']:.4f} |")
    out = Path(args.out)
    plot_reliability_diagram(rep, out / "reliability.png", args.name)
    plot_coverage_accuracy(coverage_accuracy(probs, y, np.round(np.arange(0.34, 0.951, 0.01), 2)),
                           out / "coverage_accuracy.png", f"--min-confidence on {args.name}")
    print(f"\nwrote {out / 'reliability.png'} and {out / 'coverage_accuracy.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
