"""The hybrid model (model.kind=hybrid | boosting): trained by `train`, saved as one folder, and loaded by every
runtime with the blend as its probabilities and `branch=` for one branch alone; folders of earlier releases still
load as neural; a damaged boosting file is one line from the CLI."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trendnlp import TrendClassifier, load_model
from trendnlp.config import TrendConfig
from trendnlp.model.hybrid import BoostingTrendClassifier, calibrated, choose_blend

from conftest import subprocess_env, train_tiny

REPO = Path(__file__).resolve().parents[1]
BOOSTING = {"kind": "hybrid", "boosting_min_data_in_leaf": 5, "boosting_max_rounds": 30, "boosting_leaves": [7]}


def _config(tiny_config: TrendConfig, **model) -> TrendConfig:
    raw = tiny_config.to_dict()
    raw["model"] = {**BOOSTING, **model}
    raw["train"]["calibrate_bias"] = True
    return TrendConfig.from_dict(raw)


@pytest.fixture(scope="module")
def hybrid_run(tiny_config, data_files, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("hybrid")
    result = train_tiny(_config(tiny_config), {**data_files, "test": data_files["validation"]}, out)
    return result, out / "model"


def test_hybrid_training_returns_each_branch_and_the_weight(hybrid_run):
    result, model_dir = hybrid_run
    assert set(result["branches"]) == {"neural", "boosting"} and 0.0 <= result["blend_weight"] <= 1.0
    for b in ("neural", "boosting"):
        assert set(result["branches"][b]) == {"validation", "test"}
    meta = json.loads((model_dir / "config.json").read_text())
    assert meta["hybrid"]["kind"] == "hybrid" and meta["hybrid"]["blend_weight"] == result["blend_weight"]
    assert {"boosting/model.txt", "boosting/boosting.json"} <= set(meta["files"])
    scores = meta["hybrid"]["validation_macro_f1"]
    assert scores["neural"] == pytest.approx(result["branches"]["neural"]["validation"]["macro_f1"])
    assert scores["boosting"] == pytest.approx(result["branches"]["boosting"]["validation"]["macro_f1"])
    # the blend's weight was chosen on validation: at least as good there as either branch alone
    assert result["validation"]["macro_f1"] >= max(scores["neural"], scores["boosting"]) - 1e-9
    assert not list(model_dir.rglob("*.pkl")) and not list(model_dir.rglob("*.pickle"))


def test_the_loaded_model_predicts_the_blend_and_each_branch(hybrid_run, sample_records):
    _, model_dir = hybrid_run
    clf = TrendClassifier.from_pretrained(model_dir)
    assert clf.kind == "hybrid"
    recs = sample_records[:40]
    p_n, p_b = clf.predict_proba(recs, branch="neural"), clf.predict_proba(recs, branch="boosting")
    b = clf.blend
    expected = calibrated(b.weight * p_n + (1 - b.weight) * p_b, np.asarray(b.logit_bias), b.temperature)
    np.testing.assert_allclose(clf.predict_proba(recs), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(p_n, p_b)
    np.testing.assert_allclose(clf.predict_proba(recs).sum(1), 1.0, atol=1e-5)
    assert clf.predict(recs) == [clf.labels[i] for i in expected.argmax(1)]
    via_api = load_model(model_dir, backend="torch")
    np.testing.assert_allclose(via_api.predict_proba(recs), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="branch must be"):
        clf.predict_proba(recs, branch="both")


def test_a_copied_folder_gives_the_same_probabilities(hybrid_run, sample_records, tmp_path):
    _, model_dir = hybrid_run
    shutil.copytree(model_dir, tmp_path / "copy")
    a = TrendClassifier.from_pretrained(model_dir).predict_proba(sample_records)
    np.testing.assert_allclose(TrendClassifier.from_pretrained(tmp_path / "copy").predict_proba(sample_records), a,
                               rtol=1e-6, atol=1e-7)


def test_a_zero_blend_weight_skips_the_neural_branch_with_the_same_probabilities(hybrid_run, sample_records,
                                                                                  tmp_path):
    from trendnlp.model.predict import Predictor

    _, model_dir = hybrid_run
    zero = tmp_path / "zero"
    shutil.copytree(model_dir, zero)
    meta = json.loads((zero / "config.json").read_text())
    meta["hybrid"]["blend_weight"] = 0.0
    (zero / "config.json").write_text(json.dumps(meta))
    clf = TrendClassifier.from_pretrained(zero)
    recs = sample_records[:30]
    b = clf.blend
    full = calibrated(0.0 * clf.predict_proba(recs, branch="neural") + 1.0 * clf.predict_proba(recs, branch="boosting"),
                      np.asarray(b.logit_bias), b.temperature)
    core = Predictor(clf)
    np.testing.assert_array_equal(core(recs).probs, full)
    assert core.texts_encoded == 0  # the encoder never ran
    weighted = Predictor(TrendClassifier.from_pretrained(model_dir))
    weighted(recs)
    assert weighted.texts_encoded > 0 or weighted.runtime.blend.weight == 0


def test_boosting_only_trains_no_neural_model(tiny_config, data_files, tmp_path, sample_records):
    result = train_tiny(_config(tiny_config, kind="boosting"), {**data_files, "test": data_files["validation"]},
                        tmp_path)
    assert result["blend_weight"] == 0.0 and set(result["branches"]) == {"boosting"} and result["history"] == []
    model_dir = tmp_path / "model"
    assert not (model_dir / "model.safetensors").exists() and not (model_dir / "adapter").exists()
    clf = load_model(model_dir)
    assert isinstance(clf, BoostingTrendClassifier) and clf.kind == "boosting"
    p = clf.predict_proba(sample_records[:10])
    assert p.shape == (10, 3) and np.allclose(p.sum(1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="no neural branch"):
        clf.predict_proba(sample_records[:10], branch="neural")
    assert result["test"]["macro_f1"] == pytest.approx(result["validation"]["macro_f1"])  # test is validation here
    explained = clf.explain(sample_records[:3])
    assert explained[0]["shapley"] is None and explained[0]["boosting"]["blend_weight"] == 0.0
    assert [e["label"] for e in explained] == clf.predict(sample_records[:3])
    from trendnlp.inference.explain_report import write_explanations_html

    write_explanations_html(sample_records[:3], explained, tmp_path / "report.html")
    assert "boosting branch" in (tmp_path / "report.html").read_text()
    assert "kind: **boosting**" in (model_dir / "README.md").read_text()


def test_choose_blend_takes_the_better_branch_on_validation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    good = np.full((300, 3), 0.1)
    good[np.arange(300), y] = 0.8
    noise = rng.dirichlet(np.ones(3), 300)
    assert choose_blend(good, noise, y, calibrate_bias=False)["weight"] >= 0.5
    assert choose_blend(noise, good, y, calibrate_bias=False)["weight"] <= 0.5
    only = choose_blend(None, good, y, n_weights=3)  # boosting alone: one weight, its own offsets
    assert only["weight"] == 0.0 and len(only["logit_bias"]) == 3 and only["temperature"] > 0


def test_a_folder_without_a_model_section_loads_as_neural(hybrid_run, tmp_path, sample_records):
    """Folders saved by the last release have no `model` section and no `hybrid` key: neural, as then."""
    _, model_dir = hybrid_run
    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    shutil.rmtree(old / "boosting")
    meta = json.loads((old / "config.json").read_text())
    del meta["config"]["model"], meta["hybrid"]
    meta["files"] = [f for f in meta["files"] if not f.startswith("boosting/")]
    (old / "config.json").write_text(json.dumps(meta))
    clf = TrendClassifier.from_pretrained(old)
    assert clf.kind == "neural" and clf.blend is None and clf.config.model.kind == "neural"
    np.testing.assert_allclose(clf.predict_proba(sample_records[:20]),
                               TrendClassifier.from_pretrained(model_dir).predict_proba(sample_records[:20],
                                                                                        branch="neural"),
                               rtol=1e-6, atol=1e-7)


def test_label_on_a_truncated_booster_is_one_line(hybrid_run, tmp_path, data_files):
    _, model_dir = hybrid_run
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    booster = bad / "boosting" / "model.txt"
    booster.write_text(booster.read_text()[:500])
    proc = subprocess.run([sys.executable, "-m", "trendnlp", "label", "--model", str(bad), "--input",
                           data_files["validation"], "--output", str(tmp_path / "labels.csv")],
                          capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(booster) in lines[0] and "Traceback" not in proc.stderr


def test_refit_keeps_the_choices_and_trains_on_every_known_label(tiny_config, data_files, tmp_path, sample_records):
    """train.refit: the same epochs, rounds, weight, offsets and temperature; the branches retrained on train +
    data.refit_extra + validation, recorded in config.json."""
    cfg = _config(tiny_config)
    raw = cfg.to_dict()
    raw["train"]["refit"] = True
    raw["data"]["refit_extra"] = data_files["validation"]  # any labelled records: counted once more
    result = train_tiny(TrendConfig.from_dict(raw), {**data_files, "test": data_files["validation"]}, tmp_path)
    n_train = sum(1 for _ in open(data_files["train"]))
    n_val = sum(1 for _ in open(data_files["validation"]))
    meta = json.loads((tmp_path / "model" / "config.json").read_text())
    assert meta["refit"]["records"] == n_train + 2 * n_val and meta["refit"]["extra_records"] == n_val
    selection = TrendClassifier.from_pretrained(tmp_path / "model_selection")
    refit = TrendClassifier.from_pretrained(tmp_path / "model")
    assert refit.blend.weight == selection.blend.weight and refit.blend.logit_bias == selection.blend.logit_bias
    assert refit.blend.temperature == selection.blend.temperature
    assert refit.blend.branch.params_ == selection.blend.branch.params_  # the rounds chosen on validation
    assert float(refit.temperature) == float(selection.temperature)
    assert np.allclose(refit.logit_bias.numpy(), selection.logit_bias.numpy())
    assert not np.allclose(refit.predict_proba(sample_records, branch="boosting"),
                           selection.predict_proba(sample_records, branch="boosting"))  # retrained on more
    assert result["refit"]["records"] == meta["refit"]["records"] and result["test"] is not None
    assert result["validation"] == result["refit"]["selection_validation"]  # never scored on its own training data


def test_onnx_export_of_a_hybrid_blends_like_torch(hybrid_run, tmp_path):
    """The graphs are the neural branch; the booster stays LightGBM text beside them; labels equal torch's on the
    sample catalog."""
    from trendnlp.data.record_files.records import read_records
    from trendnlp.inference.export import export_model

    _, model_dir = hybrid_run
    out = tmp_path / "exported"
    export_model(model_dir, out=out, fmt="onnx")
    assert (out / "model.onnx").is_file() and (out / "boosting" / "model.txt").is_file()
    catalog = read_records(REPO / "data_samples" / "catalog.jsonl")
    torch_clf, onnx_clf = load_model(out), load_model(out, backend="onnx")
    assert onnx_clf.kind == "hybrid" and onnx_clf.blend.weight == torch_clf.blend.weight
    p_torch, p_onnx = torch_clf.predict_proba(catalog), onnx_clf.predict_proba(catalog)
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-4)
    assert onnx_clf.predict(catalog) == torch_clf.predict(catalog)
    np.testing.assert_allclose(onnx_clf.predict_proba(catalog, branch="boosting"),
                               torch_clf.predict_proba(catalog, branch="boosting"))


def test_onnx_export_of_a_boosting_only_folder_says_why_not(tiny_config, data_files, tmp_path):
    from trendnlp.inference.export import export_onnx

    train_tiny(_config(tiny_config, kind="boosting"), data_files, tmp_path)
    with pytest.raises(ValueError, match="no neural network to export"):
        export_onnx(tmp_path / "model")


def test_explain_gives_the_weight_and_the_boosters_tree_shap(hybrid_run, sample_records):
    pytest.importorskip("captum")
    _, model_dir = hybrid_run
    clf = TrendClassifier.from_pretrained(model_dir)
    recs = sample_records[:6]
    explanations = clf.explain(recs, text_steps=0)
    probs = clf.predict_proba(recs)
    raw = clf.blend.branch.booster_.predict(clf.blend.branch.matrix(recs), raw_score=True,
                                            num_iteration=clf.blend.branch.params_["rounds"])
    for i, e in enumerate(explanations):
        assert e["label"] == clf.labels[int(probs[i].argmax())] and e["shapley"] is not None  # neural part kept
        b = e["boosting"]
        assert b["blend_weight"] == clf.blend.weight and b["class"] == e["label"]
        assert b["raw_score"] == pytest.approx(raw[i, clf.labels.index(e["label"])], abs=1e-5)
        assert len(b["top_features"]) == 8 and b["top_features"][0]["feature"] in clf.blend.branch.feature_names_
        mags = [abs(f["contribution"]) for f in b["top_features"]]
        assert mags == sorted(mags, reverse=True)
        assert set(b["neural_probabilities"]) == set(clf.labels)


def test_the_card_and_a_real_server_give_kind_weight_and_branch_scores(hybrid_run, sample_records):
    pytest.importorskip("fastapi")
    import httpx
    from serving import running_server

    result, model_dir = hybrid_run
    card = (model_dir / "README.md").read_text()
    assert "kind: **hybrid**" in card and f"{result['blend_weight']:.2f} x p_neural" in card
    assert "boosting/" in card and "validation macro-F1: " in card
    records = [{k: r[k] for k in ("product_id", "title", "sales", "cutoff")} for r in sample_records[:4]]
    expected = TrendClassifier.from_pretrained(model_dir).predict_proba(records)
    with running_server(model_dir) as url:
        meta = httpx.get(f"{url}/v1/metadata", timeout=30).json()
        got = httpx.post(f"{url}/v1/predict", json={"records": records}, timeout=60).json()["results"]
        explained = httpx.post(f"{url}/v1/explain?text_steps=0", json={"records": records[:2]}, timeout=120)
    assert meta["kind"] == "hybrid" and meta["hybrid"]["blend_weight"] == result["blend_weight"]
    assert set(meta["hybrid"]["validation_macro_f1"]) == {"neural", "boosting", "blend"}
    for res, p in zip(got, expected):
        assert [res["probabilities"][c] for c in meta["labels"]] == pytest.approx(p.tolist(), abs=1e-5)
    if explained.status_code != 501:  # 501: the explain extra is not installed
        assert explained.json()["results"][0]["boosting"]["blend_weight"] == result["blend_weight"]


def test_a_server_swaps_one_hybrid_folder_for_another_and_reports_it(hybrid_run, sample_records, tmp_path):
    """Hot swap on the hybrid: a copy with another blend weight replaces the served folder (metadata, /metrics
    and the answers follow, through the batcher); a copy with a truncated booster is refused, the old one serves."""
    pytest.importorskip("fastapi")
    import httpx
    from prometheus_client.parser import text_string_to_metric_families
    from serving import running_server

    from trendnlp.inference.model_service import folder_version

    _, model_dir = hybrid_run
    other, broken = tmp_path / "other", tmp_path / "broken"
    shutil.copytree(model_dir, other)
    meta = json.loads((other / "config.json").read_text())
    weight = meta["hybrid"]["blend_weight"]
    meta["hybrid"]["blend_weight"] = new_weight = 0.9 if weight < 0.5 else 0.1
    (other / "config.json").write_text(json.dumps(meta))
    shutil.copytree(model_dir, broken)
    booster = broken / "boosting" / "model.txt"
    booster.write_text(booster.read_text()[:200])
    records = [{k: r[k] for k in ("product_id", "title", "sales", "cutoff")} for r in sample_records[:6]]
    expected = {d: TrendClassifier.from_pretrained(d).predict_proba(records) for d in (model_dir, other)}
    assert not np.allclose(expected[model_dir], expected[other], atol=1e-4)
    token = "hybrid-test-token-0123456789"
    auth = {"Authorization": f"Bearer {token}"}

    def state(url):
        meta = httpx.get(f"{url}/v1/metadata", headers=auth, timeout=30).json()
        families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{url}/metrics", headers=auth).text)}
        info = families["trendnlp_model_info"].samples[0].labels
        probs = [[r["probabilities"][c] for c in meta["labels"]] for r in httpx.post(
            f"{url}/v1/predict", json={"records": records}, headers=auth, timeout=60).json()["results"]]
        return meta, info, np.array(probs)

    with running_server(model_dir, token=token) as url:
        meta, info, probs = state(url)
        assert meta["kind"] == "hybrid" and meta["hybrid"]["blend_weight"] == weight
        assert info["version"] == meta["model_version"] == folder_version(model_dir) and info["kind"] == "hybrid"
        np.testing.assert_allclose(probs, expected[model_dir], atol=1e-5)
        refused = httpx.post(f"{url}/v1/admin/reload", json={"model": str(broken)}, headers=auth, timeout=120)
        assert refused.status_code == 422 and "does not load" in refused.json()["detail"]
        assert state(url)[1]["version"] == folder_version(model_dir)
        done = httpx.post(f"{url}/v1/admin/reload", json={"model": str(other)}, headers=auth, timeout=120).json()
        assert done["model_version"] == folder_version(other) != folder_version(model_dir)
        meta, info, probs = state(url)
        assert meta["hybrid"]["blend_weight"] == new_weight and info["version"] == done["model_version"]
        np.testing.assert_allclose(probs, expected[other], atol=1e-5)


def test_a_folder_saved_by_the_previous_release_loads_and_labels(tmp_path):
    """tests/data/old_release_model was written by the code before model.kind existed (a sales-only model):
    it loads as neural and predicts what it predicted then. It reads `price` (sales.price_channels), which its
    records lack: that is refused now; with no price known in any period (all null) it predicts as then."""
    from trendnlp.data.record_files.io import RecordError
    from trendnlp.inference.labeling import label_file

    folder = REPO / "tests" / "data" / "old_release_model"
    assert "model" not in json.loads((folder / "config.json").read_text())["config"]
    expected = json.loads((REPO / "tests" / "data" / "old_release_expected.json").read_text())
    clf = load_model(folder)
    assert clf.kind == "neural" and clf.blend is None
    with pytest.raises(RecordError, match="field 'price': missing, but the model reads the `price` channel"):
        clf.predict_proba(expected["records"])
    records = [{**r, "price": [None] * len(r["sales"])} for r in expected["records"]]
    np.testing.assert_allclose(clf.predict_proba(records), expected["probabilities"], rtol=1e-5, atol=1e-6)
    from trendnlp.data.record_files.io import write_records

    write_records(records, tmp_path / "catalog.jsonl")
    label_file(folder, tmp_path / "catalog.jsonl", tmp_path / "labels.csv", progress=False)
    assert len((tmp_path / "labels.csv").read_text().splitlines()) == len(expected["records"]) + 1
