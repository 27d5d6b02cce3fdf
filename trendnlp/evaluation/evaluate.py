"""`evaluate`: score a saved model on labelled records (the `trendnlp evaluate` command)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trendnlp.data.record_files.io import write_json
from trendnlp.data.record_files.records import read_records
from trendnlp.data.record_files.io import ErrorReport
from trendnlp.evaluation.metrics import classification_metrics
from trendnlp.evaluation.plots import plot_confusion_matrix, plot_reliability_diagram
from trendnlp.model.calibration import calibration_report, coverage_accuracy
from trendnlp.model.classifier import TrendClassifier


def evaluate(model_dir: str | Path, data: Any, out_dir: str | Path | None = None, batch_size: int = 128,
             on_error: str = "raise", min_confidence: float | None = None) -> dict:
    """Score a saved model on labelled records (metrics.json, confusion_matrix.png and reliability.png in out_dir).

    Args:
        model_dir: a folder written by TrendClassifier.save_pretrained (e.g. runs/x/model).
        data: a records path (.jsonl/.csv/.parquet), DataFrame, dict or list of dicts with label or future_sales.
        out_dir: when given, metrics.json and confusion_matrix.png (and errors.csv of skipped rows) go there.
        batch_size: distinct texts per encoder pass.
        on_error: "raise" on the first bad row, or "skip" it (reported in out_dir/errors.csv).
        min_confidence: also report coverage and accuracy of the records whose top probability is >= this.
    Returns:
        the `metrics.classification_metrics` dict plus "calibration" (ECE and Brier before / after the model's
        temperature) and, with min_confidence, "min_confidence" (threshold, coverage, n, accuracy).

    >>> evaluate("runs/default/model", "data_samples/test.jsonl")["macro_f1"]  # doctest: +SKIP
    """
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be a probability in [0, 1], found {min_confidence}")
    clf = TrendClassifier.from_pretrained(model_dir)
    report = ErrorReport()
    recs = read_records(data, on_error=on_error, report=report, **clf.record_rules())
    missing = [r["product_id"] for r in recs if r["label"] is None]
    if missing or not recs:
        raise ValueError(f"evaluate needs labelled records (label or future_sales); {len(missing)} of {len(recs)} "
                         f"have neither, e.g. product_id={missing[:3]}")
    probs = clf.predict_proba(recs, batch_size=batch_size)
    metrics = classification_metrics([r["label"] for r in recs], probs.argmax(1), clf.labels)
    y = np.array([clf.labels.index(r["label"]) for r in recs])
    calib = calibration_report(probs, y, float(clf.temperature))
    metrics["calibration"] = {k: v for k, v in calib.items() if not k.startswith("bins")}
    if min_confidence is not None:
        metrics["min_confidence"] = coverage_accuracy(probs, y, [min_confidence])[0]
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", metrics)
        name = Path(data).name if isinstance(data, (str, Path)) else "records"
        plot_confusion_matrix(metrics, out / "confusion_matrix.png", name)
        plot_reliability_diagram(calib, out / "reliability.png", name)
        if len(report):
            report.write(out / "errors.csv")
    return metrics
