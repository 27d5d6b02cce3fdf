"""A quick, quiet command line: `--help` imports no heavy library; train and label print no third-party warnings."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import subprocess_env

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pandas", "transformers")


def test_building_the_parser_imports_no_heavy_library():
    code = ("import sys, json; from trendnlp.cli import build_parser; p = build_parser(); "
            "verbs = sorted(p._subparsers._group_actions[0].choices); "
            f"print(json.dumps([verbs, [m for m in {HEAVY!r} if m in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), check=True)
    verbs, loaded = json.loads(out.stdout)
    assert {"prepare", "train", "label", "benchmark", "export"} <= set(verbs)
    assert loaded == [], f"building the parser imported {loaded}; import them inside the command functions"


@pytest.mark.parametrize("verb", ["", "prepare", "train", "evaluate", "label", "export", "benchmark"])
def test_help_of_every_verb_imports_no_heavy_library(verb):
    code = ("import sys\nfrom trendnlp.cli import main\ntry:\n    main([" + (f"{verb!r}, " if verb else "") +
            "'--help'])\nexcept SystemExit:\n    pass\n"
            f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), check=True)
    assert "usage: trendnlp" in out.stdout
    assert out.stdout.strip().endswith("LOADED []"), out.stdout[-300:]


def test_train_and_label_print_no_third_party_warnings(tiny_bert_dir, data_files, tmp_path):
    run = tmp_path / "run"
    train = subprocess.run(
        [sys.executable, "-m", "trendnlp", "train", "--config", str(REPO / "configs" / "tiny.yaml"), "--output-dir",
         str(run), "--set", f"text.base_model={tiny_bert_dir}", "--set", f"data.train={data_files['train']}",
         "--set", f"data.validation={data_files['validation']}", "--set", "train.epochs=1"],
        capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]
    assert "| validation | " in (run / "model" / "README.md").read_text()  # the card got the metrics
    label = subprocess.run(
        [sys.executable, "-m", "trendnlp", "label", "--model", str(run / "model"), "--input",
         data_files["validation"], "--output", str(tmp_path / "labels.csv")],
        capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path)
    assert label.returncode == 0, label.stderr[-2000:]
    for name, proc in (("train", train), ("label", label)):
        lines = proc.stderr.replace("\r", "\n").splitlines()
        noisy = [ln for ln in lines if "Warning" in ln or "warn(" in ln or "Loading weights" in ln
                 or "Writing model shards" in ln]
        assert noisy == [], f"{name} printed third-party noise: {noisy[:3]}"
        assert any("epoch 1/1" in ln or "labeling" in ln for ln in lines), "progress bars should still show"
