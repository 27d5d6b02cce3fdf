"""Temperature scaling (train.calibrate_temperature), ECE / Brier, and --min-confidence in label and evaluate."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

from trendnlp.cli import main as cli_main
from trendnlp.inference.labeling import label_file
from trendnlp.model.calibration import (brier_score, calibration_report, coverage_accuracy,
                                        expected_calibration_error, fit_temperature, temper)
from trendnlp.model.classifier import TrendClassifier
from conftest import train_tiny


def _overconfident(n: int = 20000, true_t: float = 2.5, seed: int = 0):
    """Labels drawn from softmax(z), reported as softmax(z * true_t): overconfident by a factor true_t."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 3))
    p_true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in p_true])
    return temper(p_true, 1 / true_t), y


def test_fit_temperature_recovers_the_overconfidence_and_lowers_ece():
    probs, y = _overconfident()
    T = fit_temperature(probs, y)
    assert T == pytest.approx(2.5, rel=0.08)
    fixed = temper(probs, T)
    assert (fixed.argmax(1) == probs.argmax(1)).all()  # a temperature never changes a decision
    assert expected_calibration_error(fixed, y) < 0.02 < expected_calibration_error(probs, y)
    assert brier_score(fixed, y) < brier_score(probs, y)
    rep = calibration_report(fixed, y, T)
    assert rep["ece_before"] == pytest.approx(expected_calibration_error(probs, y), abs=1e-6)
    assert sum(b["count"] for b in rep["bins_after"]) == len(y) and len(rep["bins_after"]) == 15


def test_ece_and_coverage_by_hand():
    probs = np.array([[0.95, 0.05, 0.0], [0.6, 0.4, 0.0], [0.4, 0.35, 0.25], [0.9, 0.1, 0.0]])
    y = np.array([0, 1, 2, 0])
    # bins (15 wide): 0.4 alone (acc 0), 0.6 alone (acc 0), {0.9} (acc 1), {0.95} (acc 1)
    assert expected_calibration_error(probs, y) == pytest.approx((0.4 + 0.6 + 0.1 + 0.05) / 4)
    rows = coverage_accuracy(probs, y, [0.0, 0.5, 0.92, 0.99])
    assert [r["coverage"] for r in rows] == [1.0, 0.75, 0.25, 0.0]
    assert rows[1]["accuracy"] == pytest.approx(2 / 3) and np.isnan(rows[3]["accuracy"])


@pytest.fixture(scope="module")
def tempered_run(tiny_config, data_files, tmp_path_factory):
    d = tmp_path_factory.mktemp("tempered")
    result = train_tiny(tiny_config, {**data_files, "test": data_files["validation"]}, d / "run", epochs=2,
                        batch_size=16, lr=3e-3, calibrate_bias=True, calibrate_temperature=True)
    return d / "run", result, data_files["validation"]


def test_training_fits_the_temperature_after_the_offsets(tempered_run):
    run, result, val = tempered_run
    saved = load_file(str(run / "model" / "model.safetensors"))
    T = float(saved["temperature"])
    assert T != 1.0 and result["history"][result["best_epoch"] - 1]["temperature"] == pytest.approx(T)
    meta = json.loads((run / "model" / "config.json").read_text())
    assert meta["calibration"]["temperature"] == pytest.approx(T)
    assert (run / "reliability_test.png").stat().st_size > 5000
    # refit on what the saved model outputs without its temperature: the same T (fitted on the offset logits)
    clf = TrendClassifier.from_pretrained(run / "model")
    from trendnlp.data.record_files.records import read_records

    y = np.array([clf.labels.index(r["label"]) for r in read_records(val)])
    probs = clf.predict_proba(val)
    assert fit_temperature(temper(probs, 1 / T), y) == pytest.approx(T, rel=1e-3)
    cal = result["test"]["calibration"]  # test = validation here: the NLL-optimal T cannot raise its Brier much
    assert cal["temperature"] == pytest.approx(T) and cal["ece_after"] <= cal["ece_before"] + 0.02


def test_predict_proba_and_batch_labeling_apply_the_same_temperature(tempered_run, tmp_path):
    run, _, val = tempered_run
    clf = TrendClassifier.from_pretrained(run / "model")
    T = float(clf.temperature)
    label_file(clf, val, tmp_path / "labels.csv", progress=False)
    table = pd.read_csv(tmp_path / "labels.csv")
    probs = clf.predict_proba(val)
    cols = [f"p_{c}" for c in clf.labels]
    assert np.allclose(table[cols].to_numpy(), probs, atol=1e-5)
    clf.temperature.fill_(1.0)
    untempered = clf.predict_proba(val)
    assert np.allclose(temper(untempered, T), probs, atol=1e-5) and not np.allclose(untempered, probs, atol=1e-3)


def test_folder_saved_before_temperature_existed_loads_with_t_1(tempered_run, tmp_path):
    run, _, _ = tempered_run
    old = tmp_path / "old_model"
    shutil.copytree(run / "model", old)
    weights = load_file(str(old / "model.safetensors"))
    weights.pop("temperature")
    save_file(weights, str(old / "model.safetensors"), metadata={"format": "pt"})
    assert float(TrendClassifier.from_pretrained(old).temperature) == 1.0


def test_label_and_evaluate_min_confidence(tempered_run, tmp_path, capsys):
    run, _, val = tempered_run
    out = tmp_path / "labels.csv"
    assert cli_main(["label", "--model", str(run / "model"), "--input", val, "--output", str(out),
                     "--min-confidence", "0.5", "--no-progress"]) == 0
    table = pd.read_csv(out)
    top = table[["p_rising", "p_falling", "p_stable"]].max(axis=1)
    assert ((table["label"] == "uncertain") == (top < 0.5)).all()
    assert (table["label"] != "uncertain").any()
    capsys.readouterr()
    assert cli_main(["evaluate", "--model", str(run / "model"), "--data", val, "--out", str(tmp_path / "ev"),
                     "--min-confidence", "0.5"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    kept = metrics["min_confidence"]
    assert kept["n"] == int((top >= 0.5).sum()) and f"coverage {kept['coverage']:.1%}" in printed
    assert "ECE (15 bins)" in printed and (tmp_path / "ev" / "reliability.png").is_file()
    assert cli_main(["evaluate", "--model", str(run / "model"), "--data", val, "--min-confidence", "1.5"]) == 2


def test_benchmark_rows_and_report_carry_test_calibration():
    from trendnlp.benchmark.report import calibration_lines, results_markdown
    from trendnlp.benchmark.rows import aggregate

    cal = [{"ece_before": 0.05, "ece_after": 0.02, "brier_before": 0.6, "brier_after": 0.58, "temperature": 1.2},
           {"ece_before": 0.07, "ece_after": 0.02, "brier_before": 0.62, "brier_after": 0.6, "temperature": 1.3}]
    runs = [{"seed": s, "accuracy": 0.5, "macro_f1": 0.5, "f1_per_class": {c: 0.5 for c in ("rising", "falling",
             "stable")}, "val_macro_f1": 0.5, "confusion_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "seconds": 1.0,
             "calibration": c} for s, c in enumerate(cal)]
    row = aggregate("fused_gated", runs)
    assert row["ece_before"] == pytest.approx(0.06) and row["brier_after"] == pytest.approx(0.59)
    assert calibration_lines([row])[2] == "| fused_gated | 0.0600 | 0.0200 | 0.6100 | 0.5900 |"
    assert "ECE before" in results_markdown({"rows": [row], "seeds": [0, 1]})
