"""The saved model folder (trendnlp.model.folder): atomic saves (an exception or kill -9 mid-write leaves the
previous model), no replacing a folder that is not a model, a relative base resolved against the folder, a warning
on another base, a missing vocabulary refused, the files and identity listed in config.json."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_records, save_model, subprocess_env
from trendnlp.errors import ModelFolderError, OutputPathError
from trendnlp.model.classifier import TrendClassifier

REPO = Path(__file__).resolve().parents[1]


def test_save_is_atomic_when_an_exception_hits_mid_write(tiny_config, lora_model_dir, tmp_path, monkeypatch):
    import safetensors.torch

    target = tmp_path / "model"
    shutil.copytree(lora_model_dir, target)
    recs = make_records(5, 1)
    expected = TrendClassifier.from_pretrained(target).predict_proba(recs)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", fail)  # after config.json, adapter and tokenizer
    with pytest.raises(OSError, match="disk full"):
        save_model(tiny_config, make_records(10, 2), target, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no half folder, no temp left behind
    np.testing.assert_allclose(TrendClassifier.from_pretrained(target).predict_proba(recs), expected, atol=1e-6)


KILL_DURING_SAVE = """
import os, signal, sys, torch
sys.path.insert(0, {tests!r})
import safetensors.torch
from trendnlp.model.classifier import TrendClassifier
model = TrendClassifier.from_pretrained({src!r}, merge_lora=False)
with torch.no_grad():
    for p in model.parameters():
        p.add_(1.0)  # a different model
real = safetensors.torch.save_file
def die(*a, **k):
    real(*a, **k)
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 once model.safetensors is written, before the rename
safetensors.torch.save_file = die
model.save_pretrained({target!r})
"""


def test_kill_9_during_export_leaves_the_previous_model(lora_model_dir, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(lora_model_dir, target)
    recs = make_records(5, 1)
    expected = TrendClassifier.from_pretrained(target).predict_proba(recs)
    code = KILL_DURING_SAVE.format(tests=str(REPO / "tests"), src=str(lora_model_dir), target=str(target))
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert any(p.name.startswith(".model.saving-") for p in tmp_path.iterdir())  # the killed save's temp folder
    np.testing.assert_allclose(TrendClassifier.from_pretrained(target).predict_proba(recs), expected, atol=1e-6)
    TrendClassifier.from_pretrained(target, merge_lora=False).save_pretrained(target)  # the next save cleans up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_save_refuses_to_replace_a_folder_that_is_not_a_model(lora_model, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputPathError, match="not empty"):
        lora_model.save_pretrained(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_relative_base_resolves_against_the_folder_not_the_cwd(lora_model_dir, tiny_bert_dir, tmp_path, monkeypatch):
    d = tmp_path / "model"
    shutil.copytree(lora_model_dir, d)
    shutil.copytree(tiny_bert_dir, d / "base")
    meta = json.loads((d / "config.json").read_text())
    meta["config"]["text"]["base_model"] = "./base"
    (d / "config.json").write_text(json.dumps(meta))
    recs = make_records(4, 1)
    expected = TrendClassifier.from_pretrained(lora_model_dir).predict_proba(recs)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "base").mkdir(parents=True)  # a same-named folder in the cwd must not be picked up
    monkeypatch.chdir(elsewhere)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same base weights: no fingerprint warning
        np.testing.assert_allclose(TrendClassifier.from_pretrained(d).predict_proba(recs), expected, atol=1e-6)


def test_loading_on_another_base_warns_naming_both(lora_model_dir, tiny_bert_dir, tmp_path):
    from transformers import BertModel

    other = tmp_path / "other_bert"
    bert = BertModel.from_pretrained(tiny_bert_dir)
    with torch.no_grad():
        for p in bert.parameters():
            p.mul_(0.5)
    bert.save_pretrained(other)
    shutil.copy(Path(tiny_bert_dir) / "tokenizer.json", other)
    with pytest.warns(UserWarning, match=r"trained on the base encoder .*tiny_bert.*other_bert"):
        TrendClassifier.from_pretrained(lora_model_dir, base_model=str(other))


def test_missing_tokenizer_vocabulary_is_an_error_not_a_toy_tokenizer(lora_model_dir, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(lora_model_dir, d)
    (d / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(ModelFolderError, match="tokenizer/tokenizer.json"):
        TrendClassifier.from_pretrained(d)


def test_saved_folder_lists_its_files_and_identity(lora_model_dir):
    meta = json.loads((lora_model_dir / "config.json").read_text())
    assert all((lora_model_dir / f).is_file() for f in meta["files"])
    assert {"model.safetensors", "adapter/adapter_model.safetensors", "config.json"} <= set(meta["files"])
    assert len(meta["base_fingerprint"]) == 16 and meta["tokenizer_vocab_size"] > 1000
