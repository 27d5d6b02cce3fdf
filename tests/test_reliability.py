"""Reliability of the API: no silent coercion, no lost data, closed model folders, thread safety, resume identity.

Companion of test_cli_errors.py (which drives the CLI); here the library is called directly.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_records, subprocess_env
from trendnlp.config import TrendConfig
from trendnlp.data.orderlog.prepare import prepare
from trendnlp.data.record_files.io import write_records
from trendnlp.data.record_files.records import ErrorReport, RecordError, read_records
from trendnlp.errors import ConfigError, ModelFolderError, OutputPathError, ResumeError, TrendError
from trendnlp.model.classifier import TrendClassifier

REPO = Path(__file__).resolve().parents[1]


def build(tiny_config, seed: int = 0, **sections) -> TrendClassifier:
    raw = tiny_config.to_dict()
    for section, values in sections.items():
        raw[section].update(values)
    torch.manual_seed(seed)
    model = TrendClassifier(TrendConfig.from_dict(raw)).fit_feature_scaling(make_records(10, 2))
    with torch.no_grad():  # a non-zero LoRA update, so the adapter matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def model(tiny_config) -> TrendClassifier:
    return build(tiny_config)


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("reliable") / "model"
    model.save_pretrained(d)
    return d


# ---- no silent coercion ---------------------------------------------------------------------------------
def test_error_types_share_one_base():
    from trendnlp.data.record_files.records import RecordError
    from trendnlp.inference.labeling_io import ResumeMismatchError
    from trendnlp.model.base_models import BaseModelError

    for cls in (RecordError, ConfigError, ModelFolderError, OutputPathError, ResumeError, BaseModelError,
                ResumeMismatchError):
        assert issubclass(cls, TrendError)
    assert issubclass(RecordError, ValueError) and issubclass(BaseModelError, OSError)  # old catches still work


@pytest.mark.parametrize("sales", [[1, True], [np.bool_(True)], np.array([True, False])], ids=["py", "np", "array"])
def test_booleans_are_not_units(sales):
    with pytest.raises(RecordError, match=r"'sales'.*boolean"):
        read_records({"product_id": "a", "sales": sales})


@pytest.mark.parametrize("cutoff", ["2011-06-05-garbage", "2011-06-05T99:99", "2011-13-01", "05/06/2011", "2011-06"])
def test_cutoffs_are_parsed_whole(cutoff):
    with pytest.raises(RecordError, match=r"'cutoff'"):
        read_records({"product_id": "a", "sales": [1], "cutoff": cutoff})


@pytest.mark.parametrize("cutoff", ["2011-06-05", "2011-06-05T00:00:00", "2011-06-05 23:59:59+01:00"])
def test_valid_cutoffs_still_read(cutoff):
    assert read_records({"product_id": "a", "sales": [1], "cutoff": cutoff})[0]["cutoff"] == "2011-06-05"


def test_numpy_numbers_are_numbers(model):
    plain = [{"product_id": "a", "title": "red mug", "sales": [1.0, 4.0, 9.0]}, {"product_id": "b", "sales": [0.0]}]
    numpy = [{"product_id": "a", "title": "red mug", "sales": np.array([1, 4, 9], dtype=np.int64)},
             {"product_id": "b", "sales": [np.float32(0)]}]
    scalars = [{"product_id": "a", "title": "red mug", "sales": [np.int64(1), np.int32(4), np.float64(9)]},
               {"product_id": "b", "sales": np.zeros(1, dtype=np.float32)}]
    expected = model.predict_proba(plain)
    np.testing.assert_allclose(model.predict_proba(numpy), expected, atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(scalars), expected, atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(plain, batch_size=np.int64(1)), expected, atol=1e-6)


def test_prepare_refuses_an_overflowing_sum_and_bool_units():
    days = pd.date_range("2024-01-01", periods=35, freq="D")
    df = pd.DataFrame({"product_id": "mug", "timestamp": days, "units": 1e308})
    with pytest.raises(TrendError, match=r"'mug'.*2024-01-07.*infinity"):
        prepare(df, history=2, horizon=1, min_history_units=0, progress=False)
    with pytest.raises(RecordError, match="boolean"):
        prepare(df.assign(units=True), history=2, horizon=1, min_history_units=0, progress=False)


@pytest.mark.parametrize("key,value", [("train.epochs", 0), ("train.lr", -1e-4), ("train.lr", 0.0),
                                       ("train.encoder_lr", float("nan")), ("train.batch_size", 0),
                                       ("train.eval_batch_size", -3), ("train.gradient_accumulation_steps", 0),
                                       ("train.warmup_ratio", 1.0), ("train.max_grad_norm", 0.0),
                                       ("text.lora_r", 0), ("sales.history", 0), ("fusion.dropout", 1.5),
                                       ("data.val_fraction", 0.0), ("labels.tau", float("inf"))])
def test_config_rejects_out_of_range_values(key, value):
    section, name = key.split(".")
    with pytest.raises(ConfigError, match=name):
        TrendConfig.from_dict({section: {name: value}})


def test_config_accepts_numpy_numbers():
    from trendnlp.config import TrainConfig

    cfg = TrendConfig.from_dict({"train": {"epochs": np.int64(3), "lr": np.float32(1e-3), "class_weights": np.bool_(0)},
                                 "labels": {"K": np.int64(2)}})
    assert (cfg.train.epochs, cfg.train.class_weights, cfg.labels.K) == (3, False, 2)
    direct = TrendConfig(train=TrainConfig(epochs=np.int64(2), batch_size=np.int32(8)))  # built directly, too
    assert type(direct.train.epochs) is int and json.dumps(direct.to_dict())


def test_config_errors_name_the_key_and_value():
    with pytest.raises(ConfigError, match=r"train\.epochs must be >= 1, found 0"):
        TrendConfig.from_dict({"train": {"epochs": 0}})


# ---- no lost data -----------------------------------------------------------------------------------------
def test_predict_skip_keeps_rows_aligned_with_the_input(model):
    good = {"product_id": "a", "sales": [1, 2, 3]}
    recs = [good, {"product_id": "b", "sales": [1, -2]}, {**good, "product_id": "c"}, {"sales": [1]}]
    report = ErrorReport()
    proba = model.predict_proba(recs, on_error="skip", report=report)
    assert proba.shape == (4, 3)
    assert np.isnan(proba[[1, 3]]).all() and not np.isnan(proba[[0, 2]]).any()
    np.testing.assert_allclose(proba[[0, 2]], model.predict_proba([recs[0], recs[2]]), atol=1e-6)
    assert [(e.row, e.field) for e in report.errors] == [(2, "sales"), (4, "product_id")]
    labels = model.predict(pd.DataFrame(recs), on_error="skip")
    assert len(labels) == 4 and labels[1] is None and labels[3] is None and labels[0] in model.labels


def test_label_file_refuses_to_overwrite_its_input(saved, tmp_path):
    from trendnlp.inference.labeling import label_file

    inp = tmp_path / "catalog.jsonl"
    write_records(make_records(3, 1), inp)
    before = inp.read_bytes()
    with pytest.raises(OutputPathError, match="same file"):
        label_file(saved, inp, tmp_path / "." / "catalog.jsonl", progress=False)
    assert inp.read_bytes() == before


def test_save_is_atomic_when_an_exception_hits_mid_write(tiny_config, saved, tmp_path, monkeypatch):
    import safetensors.torch

    target = tmp_path / "model"
    shutil.copytree(saved, target)
    recs = make_records(5, 1)
    expected = TrendClassifier.from_pretrained(target).predict_proba(recs)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", fail)  # after config.json, adapter and tokenizer
    with pytest.raises(OSError, match="disk full"):
        build(tiny_config, seed=1).save_pretrained(target)
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


def test_kill_9_during_export_leaves_the_previous_model(saved, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(saved, target)
    recs = make_records(5, 1)
    expected = TrendClassifier.from_pretrained(target).predict_proba(recs)
    code = KILL_DURING_SAVE.format(tests=str(REPO / "tests"), src=str(saved), target=str(target))
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert any(p.name.startswith(".model.saving-") for p in tmp_path.iterdir())  # the killed save's temp folder
    np.testing.assert_allclose(TrendClassifier.from_pretrained(target).predict_proba(recs), expected, atol=1e-6)
    TrendClassifier.from_pretrained(target, merge_lora=False).save_pretrained(target)  # the next save cleans up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_save_refuses_to_replace_a_folder_that_is_not_a_model(model, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputPathError, match="not empty"):
        model.save_pretrained(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# ---- closed, self-describing model folders --------------------------------------------------------------------
def test_relative_base_resolves_against_the_folder_not_the_cwd(saved, tiny_bert_dir, tmp_path, monkeypatch):
    d = tmp_path / "model"
    shutil.copytree(saved, d)
    shutil.copytree(tiny_bert_dir, d / "base")
    meta = json.loads((d / "config.json").read_text())
    meta["config"]["text"]["base_model"] = "./base"
    (d / "config.json").write_text(json.dumps(meta))
    recs = make_records(4, 1)
    expected = TrendClassifier.from_pretrained(saved).predict_proba(recs)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "base").mkdir(parents=True)  # a same-named folder in the cwd must not be picked up
    monkeypatch.chdir(elsewhere)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same base weights: no fingerprint warning
        np.testing.assert_allclose(TrendClassifier.from_pretrained(d).predict_proba(recs), expected, atol=1e-6)


def test_loading_on_another_base_warns_naming_both(saved, tiny_bert_dir, tmp_path):
    from transformers import BertModel

    other = tmp_path / "other_bert"
    bert = BertModel.from_pretrained(tiny_bert_dir)
    with torch.no_grad():
        for p in bert.parameters():
            p.mul_(0.5)
    bert.save_pretrained(other)
    shutil.copy(Path(tiny_bert_dir) / "tokenizer.json", other)
    with pytest.warns(UserWarning, match=r"trained on the base encoder .*tiny_bert.*other_bert"):
        TrendClassifier.from_pretrained(saved, base_model=str(other))


def test_missing_tokenizer_vocabulary_is_an_error_not_a_toy_tokenizer(saved, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(saved, d)
    (d / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(ModelFolderError, match="tokenizer/tokenizer.json"):
        TrendClassifier.from_pretrained(d)


def test_saved_folder_lists_its_files_and_identity(saved):
    meta = json.loads((saved / "config.json").read_text())
    assert all((saved / f).is_file() for f in meta["files"])
    assert {"model.safetensors", "adapter/adapter_model.safetensors", "config.json"} <= set(meta["files"])
    assert len(meta["base_fingerprint"]) == 16 and meta["tokenizer_vocab_size"] > 1000


# ---- concurrency -----------------------------------------------------------------------------------------------
def test_labeler_cache_is_thread_safe(saved):
    from trendnlp.model.predict import Predictor

    clf = TrendClassifier.from_pretrained(saved)
    recs = make_records(40, 3, seed=1)
    chunks = [recs[i::6] for i in range(6)]
    expected = [Predictor(clf, text_cache=0)(c).probs for c in chunks]
    shared = Predictor(clf, batch_size=4, text_cache=12)  # small: constant eviction while others read
    worst, errors = [], []

    def work(i: int) -> None:
        try:
            for j in range(12):
                k = (i + j) % 6
                worst.append(float(np.abs(shared(chunks[k]).probs - expected[k]).max()))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and max(worst) < 1e-5
    assert shared.texts_encoded + shared.texts_cached == sum(len(set(shared.collator.texts(c)[0])) for c in chunks) * 8


# ---- training: identity of a resumed run, class coverage ------------------------------------------------------
class Stop(Exception):
    pass


def _config(tiny_config, data_files, **train):
    raw = tiny_config.to_dict()
    raw["data"].update(data_files)
    raw["train"].update({"epochs": 1, "batch_size": 16, "lr": 3e-3, "encoder_lr": 1e-3, "save_steps": 2,
                         "warmup_ratio": 0.0, **train})
    return TrendConfig.from_dict(raw)


def _stop_at(step_to_stop: int, seen: dict | None = None):
    def on_step(step, model, accelerator):
        if seen is not None:
            seen[step] = [g["lr"] for g in accelerator._optimizers[0].param_groups]
        if step == step_to_stop:
            raise Stop
    return on_step


@pytest.fixture(scope="module")
def interrupted(tiny_config, data_files, tmp_path_factory) -> Path:
    """A run stopped at step 2 (its checkpoint at step 2), copied fresh by each test."""
    from trendnlp.training import train

    out = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(Stop):
        train(_config(tiny_config, data_files), out, progress=False, on_step=_stop_at(2))
    return out


def test_resume_refuses_another_config_or_changed_data(tiny_config, data_files, interrupted, tmp_path):
    from trendnlp.training import train

    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    with pytest.raises(ResumeError, match=r"train\.lr: 0\.003 -> 0\.01.*--resume-anyway"):
        train(_config(tiny_config, data_files, lr=1e-2), run, resume=True, progress=False)
    changed = tmp_path / "train.jsonl"
    shutil.copy(data_files["train"], changed)
    with open(changed, "a") as fh:
        fh.write(json.dumps({"product_id": "new", "sales": [1, 2], "label": "stable"}) + "\n")
    data = {**data_files, "train": str(changed)}
    with pytest.raises(ResumeError, match="content of .*train.jsonl changed"):
        train(_config(tiny_config, data, **{}), run, resume=True, progress=False)


def test_resume_anyway_really_uses_the_new_learning_rates(tiny_config, data_files, interrupted, tmp_path):
    from trendnlp.training import train

    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    new = _config(tiny_config, data_files, lr=1e-2, encoder_lr=5e-3, max_steps=4)
    resumed, fresh = {}, {}
    with pytest.warns(UserWarning, match="changed settings"):
        train(new, run, resume=True, resume_anyway=True, progress=False, on_step=_stop_at(-1, resumed))
    train(new, tmp_path / "fresh", progress=False, on_step=_stop_at(-1, fresh))
    assert sorted(resumed) == [3, 4]
    assert resumed[3] == pytest.approx(fresh[3]) and resumed[4] == pytest.approx(fresh[4])  # the new schedule
    # linear decay over max_steps=4: step 3 runs at 1/4 of the base rate, the new 1e-2, not the checkpoint's 3e-3
    assert max(resumed[3]) == pytest.approx(1e-2 / 4)


def test_resume_after_changing_model_sizes_fails_clearly(tiny_config, data_files, interrupted, tmp_path):
    from trendnlp.training import train

    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    raw = _config(tiny_config, data_files).to_dict()
    raw["sales"]["hidden_size"] = 8
    with pytest.raises(ResumeError, match="sales.hidden_size"):
        train(TrendConfig.from_dict(raw), run, resume=True, progress=False)
    with pytest.raises(ResumeError, match="model sizes changed"), pytest.warns(UserWarning, match="changed settings"):
        train(TrendConfig.from_dict(raw), run, resume=True, resume_anyway=True, progress=False)


def test_class_coverage_warnings():
    from trendnlp.training import warn_on_class_coverage

    names = ["rising", "falling", "stable"]
    with pytest.warns(UserWarning, match="single class"):
        warn_on_class_coverage([{"label": "rising"}] * 3, [{"label": "rising"}], names)
    with pytest.warns(UserWarning, match=r"no \['stable'\]"):
        warn_on_class_coverage([{"label": n} for n in names], [{"label": "rising"}, {"label": "falling"}], names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_on_class_coverage([{"label": n} for n in names], [{"label": n} for n in names], names)


# ---- prepare --on-error skip (API) ------------------------------------------------------------------------------
def test_prepare_skip_accounts_for_every_input_row():
    days = pd.date_range("2024-01-01", periods=120, freq="D")
    df = pd.DataFrame({"product_id": ["a", "b"] * 60, "timestamp": days.astype(str), "units": 3.0}).astype(object)
    df.loc[[4, 9], "units"] = [-1, "x"]
    df.loc[20, "timestamp"] = "never"
    clean = df.drop(index=[4, 9, 20])
    result = prepare(df, history=4, horizon=1, min_history_units=0, progress=False, on_error="skip")
    assert [(e.row, e.field) for e in result.errors.errors] == [(5, "units"), (10, "units"), (21, "timestamp")]
    expected = prepare(clean.reset_index(drop=True), history=4, horizon=1, min_history_units=0, progress=False)
    assert result.records == expected.records
