"""The built wheel on its own: installed outside the repository, `trendnlp train --sales` runs from another folder
with the configs shipped inside the package (no configs/ folder, no checkout)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (whl,) = out.glob("trendnlp-*.whl")
    return whl


def test_wheel_ships_the_configs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {"trendnlp/configs/default.yaml", "trendnlp/configs/online_retail.yaml"} <= set(names)
    assert not any(n.startswith(("tests/", "configs/", "data_samples/")) for n in names)


@pytest.mark.slow
def test_train_from_an_order_log_with_the_installed_wheel(wheel, tmp_path):
    """The wheel installed into its own folder, run from a folder that is not the repository: the default config
    comes from the package, the model from the shipped MiniLM package, the data from data_samples/."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    where = subprocess.run([sys.executable, "-c", "import trendnlp; print(trendnlp.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(site))  # the wheel's copy, not the checkout
    samples = ROOT / "data_samples"
    run = subprocess.run([sys.executable, "-m", "trendnlp", "train", "--sales", str(samples / "orders.csv"),
                          "--texts", str(samples / "products.csv"), "--reviews", str(samples / "reviews.csv"),
                          "--output-dir", "run", "--set", "train.max_steps=3", "--set", "train.epochs=1",
                          "--no-progress"], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics["split"]["ranges"]["test"] == ["2023-11-12", "2023-11-26"]
    assert metrics["test"]["n"] == metrics["split"]["records"]["test"] > 0
    assert (work / "run" / "model" / "config.json").is_file() and "Traceback" not in run.stderr
