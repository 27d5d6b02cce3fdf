"""Per-class logit offsets fitted on validation (train.calibrate_bias): the search, the training hook, the folder."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import f1_score

from trendnlp.model.calibration import fit_logit_bias, macro_f1_from_predictions
from trendnlp.config import TrendConfig
from trendnlp.model.classifier import TrendClassifier
from trendnlp.training import train


def test_macro_f1_matches_scikit_learn():
    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 3, 500), rng.integers(0, 3, 500)
    assert macro_f1_from_predictions(y, pred, 3) == pytest.approx(f1_score(y, pred, average="macro"))
    assert macro_f1_from_predictions(np.array([0, 0]), np.array([0, 0]), 3) == pytest.approx(1 / 3)


def test_offsets_undo_a_prior_shift():
    """A model that learned a period where class 1 was common over-predicts it once class 0 is common."""
    rng = np.random.default_rng(1)
    n = 6000
    y = rng.choice(3, n, p=[0.5, 0.2, 0.3])
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), y] += 1.5  # informative
    logits[:, 1] += 0.8  # the old prior
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    bias = fit_logit_bias(probs, y)
    before = macro_f1_from_predictions(y, probs.argmax(1), 3)
    after = macro_f1_from_predictions(y, (np.log(probs) + bias).argmax(1), 3)
    assert bias[2] == 0 and bias[1] - bias[0] < -0.4  # class 1 pushed down relative to class 0
    assert after > before + 0.02


def test_no_offsets_when_nothing_to_gain():
    y = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[y] * 0.9 + 0.1 / 3
    assert fit_logit_bias(probs, y).tolist() == [0.0, 0.0, 0.0]
    assert fit_logit_bias(np.zeros((0, 3)), np.zeros(0, dtype=int)).tolist() == [0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def calibrated_run(tiny_config, data_files, tmp_path_factory):
    d = tmp_path_factory.mktemp("calibrated")
    raw = tiny_config.to_dict()
    raw["data"].update(data_files)
    raw["train"].update(epochs=2, batch_size=16, lr=3e-3, calibrate_bias=True)
    result = train(TrendConfig.from_dict(raw), d / "run", progress=False)
    return d, result, data_files["validation"]


def test_training_fits_offsets_each_epoch_and_exports_the_best(calibrated_run):
    d, result, val_file = calibrated_run
    for row in result["history"]:
        assert len(row["logit_bias"]) == 3 and row["logit_bias"][2] == 0
        assert row["validation"]["macro_f1"] >= row["uncalibrated_macro_f1"]
    best = result["history"][result["best_epoch"] - 1]
    saved = load_file(str(d / "run" / "model" / "model.safetensors"))
    assert saved["logit_bias"].tolist() == pytest.approx(best["logit_bias"])
    # the reloaded model applies the offsets: its validation macro-F1 is the reported (calibrated) one
    clf = TrendClassifier.from_pretrained(d / "run" / "model")
    probs = clf.predict_proba(val_file)
    from trendnlp.data.record_files.records import read_records

    y = [clf.labels.index(r["label"]) for r in read_records(val_file)]
    assert f1_score(y, probs.argmax(1), average="macro") == pytest.approx(best["validation"]["macro_f1"], abs=1e-6)


def test_offsets_apply_in_eval_mode_only(calibrated_run):
    d, _, _ = calibrated_run
    clf = TrendClassifier.from_pretrained(d / "run" / "model")
    clf.temperature.fill_(1.0)  # the offsets alone; tests/test_temperature.py covers the temperature
    text = torch.randn(4, clf.empty_text.shape[0])
    sales = torch.randn(4, clf.sales_encoder.output_dim)

    def head(bias, training):
        clf.logit_bias.copy_(torch.tensor(bias))
        clf.train(training)
        torch.manual_seed(0)  # the same dropout masks in training mode
        return clf.head(text, sales)

    assert torch.allclose(head([2.0, -1.0, 0.0], False) - head([0.0, 0.0, 0.0], False),
                          torch.tensor([[2.0, -1.0, 0.0]] * 4), atol=1e-5)
    assert torch.equal(head([2.0, -1.0, 0.0], True), head([0.0, 0.0, 0.0], True))


def test_folder_saved_before_offsets_existed_still_loads(calibrated_run, tmp_path):
    import shutil

    d, _, _ = calibrated_run
    old = tmp_path / "old_model"
    shutil.copytree(d / "run" / "model", old)
    weights = load_file(str(old / "model.safetensors"))
    weights.pop("logit_bias")
    save_file(weights, str(old / "model.safetensors"), metadata={"format": "pt"})
    assert TrendClassifier.from_pretrained(old).logit_bias.tolist() == [0.0, 0.0, 0.0]
