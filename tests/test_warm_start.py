"""`trendnlp train --init-from MODEL`: an update starts from every exported weight, offsets and scaling included."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trendnlp.config import TrendConfig
from trendnlp.data.record_files.io import write_records
from trendnlp.model.classifier import TrendClassifier
from trendnlp.training import train, warm_start

ROOT = Path(__file__).resolve().parents[1]


def config_with(base: TrendConfig, data: dict | None = None, **sections: dict) -> TrendConfig:
    raw = base.to_dict()
    raw["data"].update(data or {})
    for section, values in sections.items():
        raw[section].update(values)
    return TrendConfig.from_dict(raw)


@pytest.fixture(scope="module")
def exported(tiny_config, sample_records, tmp_path_factory) -> Path:
    """A saved model whose every part differs from a fresh initialisation: LoRA B, head, offsets, scaling."""
    torch.manual_seed(1)
    model = TrendClassifier(tiny_config).fit_feature_scaling(sample_records)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
        model.logit_bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
    d = tmp_path_factory.mktemp("exported") / "model"
    model.save_pretrained(d)
    return d


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    bad = [k for k in a if not torch.allclose(a[k].float(), b[k].float(), atol=1e-6)]
    assert not bad, bad[:5]


def test_warm_start_copies_every_weight_offset_and_scaling(tiny_config, exported):
    saved = TrendClassifier.from_pretrained(exported, merge_lora=False).state_dict()
    torch.manual_seed(7)
    fresh = TrendClassifier(tiny_config)
    differs = [k for k in saved if not torch.allclose(fresh.state_dict()[k].float(), saved[k].float())]
    assert any("lora_B" in k for k in differs) and "logit_bias" in differs and "sales_encoder.summary_mean" in differs
    assert_same_state(warm_start(fresh, exported).state_dict(), saved)
    # the trainable parts stay trainable and the frozen base stays frozen
    assert {n for n, p in fresh.named_parameters() if p.requires_grad} == {
        n for n, p in TrendClassifier(tiny_config).named_parameters() if p.requires_grad}


def test_training_starts_from_the_exported_weights(tiny_config, exported, sample_records, tmp_path):
    # new weeks on another scale: a refit scaling would differ; lr 1e-9 (config needs > 0) moves the first step ~1e-9
    shifted = copy.deepcopy(sample_records)
    for r in shifted:
        r["sales"] = [10 * x for x in r["sales"]]
        r["future_sales"] = [10 * x for x in r["future_sales"]]
    write_records(shifted[:150], tmp_path / "train.jsonl")
    write_records(shifted[150:], tmp_path / "val.jsonl")
    cfg = config_with(tiny_config, {"train": str(tmp_path / "train.jsonl"), "validation": str(tmp_path / "val.jsonl")},
                      train={"lr": 1e-9, "encoder_lr": 1e-9, "max_steps": 1, "calibrate_bias": True},
                      fusion={"dropout": 0.3})  # a training-only setting may change
    saved = TrendClassifier.from_pretrained(exported, merge_lora=False).state_dict()
    seen = {}

    def first_step(step, model, accelerator):
        seen[step] = {k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}

    train(cfg, tmp_path / "run", progress=False, on_step=first_step, init_from=exported)
    assert_same_state(seen[1], saved)
    # the update is exported with the scaling it started from, not one refitted on the shifted sales
    updated = TrendClassifier.from_pretrained(tmp_path / "run" / "model", merge_lora=False).state_dict()
    for k in ("sales_encoder.summary_mean", "sales_encoder.summary_std"):
        assert torch.equal(updated[k], saved[k])
    assert not torch.equal(updated["logit_bias"], saved["logit_bias"])  # offsets refitted on the new validation


def test_an_architecture_change_is_refused_with_the_key_named(tiny_config, exported, data_files, tmp_path):
    with pytest.raises(ValueError, match=r"text\.lora_r \(8 there, 4 here\)"):
        warm_start(TrendClassifier(config_with(tiny_config, text={"lora_r": 4})), exported)
    cfg = tmp_path / "config.yaml"
    config_with(tiny_config, data_files, sales={"hidden_size": 8}).save_yaml(cfg)
    done = subprocess.run([sys.executable, "-m", "trendnlp", "train", "--config", str(cfg), "--output-dir",
                           str(tmp_path / "run"), "--init-from", str(exported), "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "sales.hidden_size (16 there, 8 here)" in done.stderr
    assert "Traceback" not in done.stderr
