"""The boosting branch (model/boosting.py, model/boosting_features.py): features read off the channel registry, the
LightGBM text-format round trip, and a damaged boosting file as one line naming it (in a subprocess: LightGBM's
parser is C++)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from trendnlp.data.record_files import channels
from trendnlp.data.record_files.channels import Channel, centred_log1p
from trendnlp.labels import LABELS, LabelRule
from trendnlp.model import boosting_features as bf
from trendnlp.model.boosting import BOOSTER_NAME, META_NAME, BoostingBranch

GRID = [dict(num_leaves=7, min_data_in_leaf=5, learning_rate=0.1)]


def _records(n: int, seed: int, cutoff: str = "2011-06-05") -> list[dict]:
    """The label is readable from the orders channel only (sales are noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = LABELS[rng.integers(3)]
        orders = [5.0] * 22 + [5.0 * {"rising": 3.0, "falling": 0.3, "stable": 1.0}[label]] * 4
        out.append({"product_id": f"p{i}", "title": f"{label} mug", "sales": rng.poisson(10, 26).astype(float).tolist(),
                    "orders": orders, "customers": orders, "market_sales": [500.0] * 26, "cutoff": cutoff,
                    "first_sale": "2010-12-05", "freq": "W", "label": label})
    return out


@pytest.fixture(scope="module")
def fitted() -> tuple[BoostingBranch, list[dict]]:
    train, val, test = _records(200, 0), _records(60, 1, "2011-07-03"), _records(60, 2, "2011-08-07")
    return BoostingBranch(LabelRule(), seed=0, grid=GRID, max_rounds=30).fit(train, val), test


def test_a_new_registry_channel_gets_its_columns_with_no_other_edit(monkeypatch):
    monkeypatch.setitem(channels.CHANNELS, "returns", Channel(
        "returns", "units returned per period", build="count", column="returns_col", features=("returns",),
        encode=centred_log1p))
    names = bf.feature_names()
    assert {f"returns_{s}" for s in bf.COUNT_STATS} <= set(names)
    rec = {"sales": [4.0] * 26, "returns": [0.0] * 22 + [3.0] * 4, "cutoff": "2011-10-23"}
    X = bf.feature_matrix([rec, {"sales": [1.0], "cutoff": "2011-10-23"}], LabelRule())
    assert X.shape == (2, len(names))
    assert X[0, names.index("returns_log_recent")] == pytest.approx(np.log1p(3.0))
    assert np.isnan(X[1, names.index("returns_log_recent")])  # a record without the channel: missing, not 0


def test_the_shipped_channels_keep_the_benchmark_columns_in_order():
    names = bf.channel_feature_names()
    assert names[:3] == ("week_of_year", "month", "age_periods")
    assert [n for n in names if n.endswith("_log_recent")] == ["orders_log_recent", "customers_log_recent",
                                                               "market_sales_log_recent"]
    assert names[-4:] == ("customers_per_order_recent", "share_of_market_recent_vs_all", "price_rel_median",
                          "price_change_recent_vs_previous")


def test_save_load_round_trip_is_lightgbm_text_and_json(fitted, tmp_path):
    branch, test = fitted
    branch.save(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [META_NAME, BOOSTER_NAME]
    assert (tmp_path / "b" / BOOSTER_NAME).read_text().startswith("tree")  # LightGBM's text format
    meta = json.loads((tmp_path / "b" / META_NAME).read_text())
    assert meta["feature_names"] == list(bf.feature_names()) and meta["params"]["rounds"] == branch.params_["rounds"]
    loaded = BoostingBranch.load(tmp_path / "b")
    np.testing.assert_allclose(loaded.predict_proba(test), branch.predict_proba(test), rtol=1e-6, atol=1e-9)
    acc = np.mean(np.array(LABELS)[loaded.predict_proba(test).argmax(1)] == [r["label"] for r in test])
    assert acc > 0.9  # it learned the orders channel


def test_contributions_are_exact_tree_shap(fitted):
    branch, test = fitted
    contrib = branch.contributions(test[:5])
    assert contrib.shape == (5, 3, len(branch.feature_names_) + 1)
    raw = branch.booster_.predict(branch.matrix(test[:5]), num_iteration=branch.params_["rounds"], raw_score=True)
    np.testing.assert_allclose(contrib.sum(-1), raw, rtol=1e-5, atol=1e-6)  # SHAP values add up to the raw score


def test_text_pca_round_trip(tiny_bert_dir, tmp_path):
    train, val = _records(80, 0), _records(30, 1, "2011-07-03")
    branch = BoostingBranch(LabelRule(), text=True, base_model=tiny_bert_dir, grid=GRID, max_rounds=10).fit(train, val)
    assert branch.feature_names_[-1].startswith("text_pca_")
    branch.save(tmp_path / "t")
    assert (tmp_path / "t" / "pca.safetensors").is_file()
    loaded = BoostingBranch.load(tmp_path / "t", base_model=tiny_bert_dir)
    np.testing.assert_allclose(loaded.predict_proba(val), branch.predict_proba(val), rtol=1e-6, atol=1e-9)


_LOAD = """
import sys
from trendnlp.errors import ModelFolderError
from trendnlp.model.boosting import BoostingBranch
for folder in sys.argv[1:]:
    try:
        BoostingBranch.load(folder)
    except ModelFolderError as e:
        print(e)
"""


def test_a_damaged_booster_is_one_error_naming_the_file(fitted, tmp_path):
    """Truncated and hand-edited model.txt, each loaded in one child process: an error naming the file, and the
    process goes on to the next (LightGBM's C++ parser never sees them)."""
    branch, _ = fitted
    paths = []
    for damage in ("truncate", "edit"):
        branch.save(tmp_path / damage)
        path = tmp_path / damage / BOOSTER_NAME
        text = path.read_text()
        path.write_text(text[: len(text) // 3] if damage == "truncate" else
                        text.replace("num_leaves=", "num_leaves=9", 1))
        paths.append(path)
    proc = subprocess.run([sys.executable, "-c", _LOAD, *(str(p.parent) for p in paths)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr  # the process survived both
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(str(p) in line and "checksum" in line for p, line in zip(paths, lines))
