"""Model card, self-contained folders and ONNX export / onnxruntime backends (fp32 and int8)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_records
from conftest import save_model
from trendnlp.data.record_files.io import write_records
from trendnlp.evaluation.metrics import classification_metrics
from trendnlp.inference.export import export_model, export_onnx
from trendnlp.inference.labeling import label_file
from trendnlp.model.card import write_model_card
from trendnlp.model.classifier import TrendClassifier
from trendnlp.model.load import load_model

PROBS = ["p_rising", "p_falling", "p_stable"]


@pytest.fixture(scope="module")
def onnx_dir(tiny_config, sample_records, tmp_path_factory) -> Path:
    """A tiny gated model (non-zero LoRA update), exported with its int8 graph."""
    d = save_model(tiny_config, sample_records, tmp_path_factory.mktemp("onnx") / "model")
    export_onnx(d, int8=True)
    return d


def test_card_names_rule_metrics_and_loading(tiny_config, sample_records, tmp_path):
    d = save_model(tiny_config, sample_records, tmp_path / "m", train={"calibrate_bias": True})
    card = (d / "README.md").read_text()
    assert "rising if change >= log(1 + 0.25)" in card and "Not measured yet" in card
    assert "TrendClassifier.from_pretrained" in card and "needs the base encoder" in card
    clf = TrendClassifier.from_pretrained(d)
    probs = clf.predict_proba(sample_records)
    val = classification_metrics([r["label"] for r in sample_records], probs.argmax(1), clf.labels)
    (d / "metrics.json").write_text(json.dumps({"best_epoch": 2, "validation": val}))
    card = write_model_card(d).read_text()
    assert f"| validation | {len(sample_records)} | {val['macro_f1']:.4f} | {val['accuracy']:.4f} |" in card
    assert "best epoch 2" in card and "Not measured yet" not in card


def test_self_contained_loads_without_the_base(tiny_config, sample_records, tmp_path):
    d = save_model(tiny_config, sample_records, tmp_path / "m")
    expected = TrendClassifier.from_pretrained(d).predict_proba(sample_records)
    out = tmp_path / "dist"
    summary = export_model(d, out=out, self_contained=True)
    assert summary["self_contained"]
    for name in ["config.json", "model.safetensors", "README.md", "encoder/config.json", "encoder/model.safetensors",
                 "adapter/adapter_model.safetensors", "tokenizer/tokenizer_config.json"]:
        assert (out / name).is_file(), name
    assert not [p for p in out.rglob("*") if p.suffix in (".bin", ".pt", ".pkl", ".pickle")]
    meta = json.loads((out / "config.json").read_text())
    assert meta["self_contained"]["encoder"] == "encoder"
    meta["config"]["text"]["base_model"] = str(tmp_path / "no-such-base")  # as on a machine without the base
    (out / "config.json").write_text(json.dumps(meta))
    loaded = TrendClassifier.from_pretrained(out)
    np.testing.assert_allclose(loaded.predict_proba(sample_records), expected, atol=1e-5)
    # the un-merged route still exists when the base is given explicitly
    with pytest.raises(OSError):
        TrendClassifier.from_pretrained(out, base_model=str(tmp_path / "no-such-base"))
    # and a loaded self-contained model can be re-saved (warm start from it)
    again = TrendClassifier.from_pretrained(out, merge_lora=False)
    again.save_pretrained(tmp_path / "again")
    np.testing.assert_allclose(TrendClassifier.from_pretrained(tmp_path / "again").predict_proba(sample_records),
                               expected, atol=1e-5)


def test_onnx_files_and_fp32_equals_torch(onnx_dir, sample_records):
    for name in ["model.onnx", "model.int8.onnx", "head.onnx", "onnx.json"]:
        assert (onnx_dir / name).is_file(), name
    torch_p = TrendClassifier.from_pretrained(onnx_dir).predict_proba(sample_records)
    onnx_clf = load_model(onnx_dir, "onnx")
    np.testing.assert_allclose(onnx_clf.predict_proba(sample_records), torch_p, atol=1e-4)
    assert onnx_clf.predict(sample_records[:3]) == [onnx_clf.labels[i] for i in torch_p[:3].argmax(1)]


def test_int8_agreement_reported(onnx_dir, sample_records):
    torch_p = TrendClassifier.from_pretrained(onnx_dir).predict_proba(sample_records)
    int8_p = load_model(onnx_dir, "onnx-int8").predict_proba(sample_records)
    agree = float((int8_p.argmax(1) == torch_p.argmax(1)).mean())
    diff = float(np.abs(int8_p - torch_p).max())
    print(f"int8 vs torch fp32 on {len(sample_records)} records: label agreement {agree:.4f}, "
          f"max probability difference {diff:.4f}")
    np.testing.assert_allclose(int8_p.sum(1), 1.0, atol=1e-5)
    assert agree >= 0.95 and diff < 0.1


def test_label_file_onnx_keeps_dedup_and_cache(onnx_dir, tmp_path):
    recs = sorted(make_records(60, 8, seed=3), key=lambda r: r["cutoff"])  # as catalogs come: by cutoff
    for r in recs:  # one text per product, so later cutoffs meet cached texts
        r.update(title=r["title"] and f"item {r['product_id']}", description="", reviews=[])
    write_records(recs, tmp_path / "catalog.jsonl")
    ref = label_file(onnx_dir, tmp_path / "catalog.jsonl", tmp_path / "torch.csv", window=100, progress=False)
    for backend, atol in (("onnx", 1e-4), ("onnx-int8", 0.1)):
        s = label_file(onnx_dir, tmp_path / "catalog.jsonl", tmp_path / f"{backend}.csv", window=100,
                       progress=False, backend=backend)
        assert s["rows_written"] == len(recs) and s["texts_cached"] == ref["texts_cached"] > 0
        assert s["texts_encoded"] == ref["texts_encoded"]
        a, b = pd.read_csv(tmp_path / "torch.csv"), pd.read_csv(tmp_path / f"{backend}.csv")
        assert list(a["product_id"]) == list(b["product_id"])
        np.testing.assert_allclose(b[PROBS].to_numpy(), a[PROBS].to_numpy(), atol=atol)
    with pytest.raises(ValueError, match="backend"):
        label_file(onnx_dir, tmp_path / "catalog.jsonl", tmp_path / "x.csv", backend="onnx", dtype="bf16")


@pytest.mark.parametrize("sections", [{"fusion": {"method": "cross_attention"}}, {"text": {"enabled": False}},
                                      {"sales": {"enabled": False}}], ids=["cross_attention", "sales_only",
                                                                          "text_only"])
def test_other_shapes_export_and_match(tiny_config, sample_records, tmp_path, sections):
    d = save_model(tiny_config, sample_records, tmp_path / "m", **sections)
    files = export_onnx(d)["files"]
    assert ("head.onnx" in files) == (sections == {"sales": {"enabled": False}})
    torch_p = TrendClassifier.from_pretrained(d).predict_proba(sample_records)
    np.testing.assert_allclose(load_model(d, "onnx").predict_proba(sample_records),
                               torch_p, atol=1e-4)
    write_records(sample_records, tmp_path / "c.jsonl")
    label_file(d, tmp_path / "c.jsonl", tmp_path / "o.csv", window=64, progress=False, backend="onnx")
    np.testing.assert_allclose(pd.read_csv(tmp_path / "o.csv")[PROBS].to_numpy(), torch_p, atol=1e-4)


def test_missing_graph_names_the_export_command(tiny_config, sample_records, tmp_path):
    d = save_model(tiny_config, sample_records, tmp_path / "m", text={"enabled": False})
    with pytest.raises(FileNotFoundError, match="trendnlp export --model .* --format onnx --int8"):
        load_model(d, "onnx-int8")
    shutil.rmtree(d)


def test_int8_smoothing_keeps_the_fp32_function_and_is_written(onnx_dir, sample_records, tmp_path):
    """Smoothing divides activations and multiplies weights by the same per-channel scales: the fp32 graph
    computes what it did before; `--calibration` writes the smoothed int8 graph and says so in onnx.json."""
    import onnx
    import onnxruntime as ort

    from trendnlp.inference.quantize import _smooth, calibration_feeds

    clf = TrendClassifier.from_pretrained(onnx_dir)
    texts = [t for t in dict.fromkeys(clf.make_collator().texts(sample_records)[0])]
    runtime = load_model(onnx_dir, "onnx")
    extra = {"text_index": np.zeros(1, np.int64), **{k: v.numpy() for k, v in runtime.dummy_sales(1).items()}}
    feeds = list(calibration_feeds(texts, clf.tokenizer, clf.config.text.max_length, extra))
    model = onnx.load(str(onnx_dir / "model.onnx"))
    info = _smooth(model, onnx_dir / "model.onnx", feeds, alpha=0.8)
    assert info == {"smoothed": 8, "calibration_texts": len(texts)}  # 2 layers x (Attention + 3 MatMul)
    plain = ort.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    smoothed = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for feed in feeds:
        np.testing.assert_allclose(smoothed.run(["pooled"], feed)[0], plain.run(["pooled"], feed)[0], atol=1e-4)

    write_records(sample_records, tmp_path / "train.jsonl")
    out = tmp_path / "calibrated"
    export_model(onnx_dir, out=out, fmt="onnx", int8=True, calibration=tmp_path / "train.jsonl")
    meta = json.loads((out / "onnx.json").read_text())
    assert meta["int8_smoothed"] == 8 and meta["int8_calibration_texts"] == len(texts)
    int8_p = load_model(out, "onnx-int8").predict_proba(sample_records)
    torch_p = clf.predict_proba(sample_records)
    assert float((int8_p.argmax(1) == torch_p.argmax(1)).mean()) >= 0.95
    write_records([{**r, "title": "", "description": "", "reviews": []} for r in sample_records[:5]],
                  tmp_path / "no_text.jsonl")
    with pytest.raises(ValueError, match="no_text.jsonl: no record has text"):
        export_model(onnx_dir, out=tmp_path / "x", fmt="onnx", int8=True, calibration=tmp_path / "no_text.jsonl")
    with pytest.raises(ValueError, match="--calibration calibrates the int8 graph"):
        export_model(onnx_dir, out=tmp_path / "y", fmt="onnx", calibration=tmp_path / "train.jsonl")
