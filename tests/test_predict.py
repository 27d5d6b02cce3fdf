"""The one prediction core (model/predict.py): one pass gives probabilities and expected change, however the
records are windowed and batched, aligned with the input, for every caller."""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import torch

import trendnlp
from conftest import make_records, save_model
from trendnlp.data.record_files.io import write_records
from trendnlp.data.record_files.io import ErrorReport, RecordError
from trendnlp.inference.labeling import label_file
from trendnlp.model import predict as core
from trendnlp.model.classifier import TrendClassifier
from trendnlp.model.predict import Predictor, labels_of


@pytest.fixture(scope="module")
def model_dir(tiny_config, sample_records, tmp_path_factory):
    return save_model(tiny_config, sample_records, tmp_path_factory.mktemp("core") / "model",
                      fusion={"change_head": True})


@pytest.fixture(scope="module")
def clf(model_dir):
    return trendnlp.load_model(model_dir)


def test_load_model_returns_the_torch_runtime_and_names_bad_backends(model_dir, clf):
    assert isinstance(clf, TrendClassifier) and not clf.training
    with pytest.raises(ValueError, match="backend must be one of"):
        trendnlp.load_model(model_dir, backend="tensorrt")


def test_probabilities_labels_and_change_come_from_one_pass(clf, sample_records):
    out = clf.predict_outputs(sample_records)
    assert out.probs.shape == (len(sample_records), 3) and out.change.shape == (len(sample_records),)
    np.testing.assert_array_equal(out.probs, clf.predict_proba(sample_records))
    np.testing.assert_array_equal(out.change, clf.predict_change(sample_records))
    assert clf.predict(sample_records) == labels_of(out.probs, clf.labels)


def test_the_core_equals_the_models_own_forward(clf, sample_records):
    recs = sample_records[:40]
    batch = clf.make_collator()(recs)
    batch.pop("labels", None)
    batch.pop("change_target", None)
    with torch.inference_mode():
        out = clf(**batch)
    np.testing.assert_allclose(clf.predict_proba(recs), out["logits"].float().softmax(-1).numpy(), atol=1e-5)
    np.testing.assert_allclose(clf.predict_change(recs), out["change"].numpy(), atol=1e-5)


def test_windows_and_batch_sizes_do_not_change_the_outputs(clf, sample_records, monkeypatch):
    ref = clf.predict_outputs(sample_records, batch_size=64)
    monkeypatch.setattr(core, "WINDOW", 7)
    monkeypatch.setattr(core, "HEAD_BATCH", 5)
    small = clf.predict_outputs(sample_records, batch_size=3)
    np.testing.assert_allclose(small.probs, ref.probs, atol=1e-5)
    np.testing.assert_allclose(small.change, ref.change, atol=1e-5)


def test_length_groups_cover_every_text_once_and_pad_less_than_one_pass():
    rng = np.random.default_rng(0)
    for n, size in ((1, 64), (64, 64), (200, 64), (300, 7)):
        lengths = rng.integers(5, 49, n)
        groups = core.length_groups(lengths, size)
        assert sorted(np.concatenate(groups).tolist()) == list(range(n)) and max(map(len, groups)) <= size
        padded = sum(len(g) * lengths[g].max() + core.PASS_COST_TOKENS for g in groups)
        one_pass = sum(len(g) * lengths[g].max() + core.PASS_COST_TOKENS for g in core._chunks(np.argsort(lengths), size))
        assert padded <= one_pass
    # 64 texts of 30 to 48 tokens: a few passes of similar lengths instead of one padded to 48
    assert len(core.length_groups(rng.integers(30, 49, 64), 64)) > 1
    assert [len(g) for g in core.length_groups(np.full(64, 48), 64)] == [64]


def test_a_skipped_record_keeps_its_row(clf, sample_records):
    recs = [sample_records[0], {"product_id": "bad", "sales": [-1.0]}, sample_records[1]]
    report = ErrorReport()
    out = clf.predict_outputs(recs, on_error="skip", report=report)
    assert np.isnan(out.probs[1]).all() and np.isnan(out.change[1]) and not np.isnan(out.probs[[0, 2]]).any()
    assert len(report) == 1
    labels = clf.predict(recs, on_error="skip")
    assert labels[1] is None and labels[0] in clf.labels


def test_the_text_cache_serves_repeated_texts_with_the_same_probabilities(clf, sample_records):
    predictor = Predictor(clf, batch_size=4, text_cache=10_000)
    first = predictor(sample_records).probs
    encoded = predictor.texts_encoded
    second = predictor(sample_records).probs
    assert encoded > 0 and predictor.texts_encoded == encoded and predictor.texts_cached >= encoded
    np.testing.assert_allclose(second, first, atol=1e-6)


def test_label_file_writes_expected_change_from_the_same_pass(model_dir, clf, sample_records, tmp_path):
    write_records(sample_records, tmp_path / "catalog.jsonl")
    label_file(model_dir, tmp_path / "catalog.jsonl", tmp_path / "labels.csv", window=50, progress=False)
    got = pd.read_csv(tmp_path / "labels.csv")
    assert list(got["product_id"]) == [r["product_id"] for r in sample_records]
    np.testing.assert_allclose(got["expected_change"], clf.predict_change(sample_records), atol=1e-5)


def test_predict_proba_on_a_dataframe_indexed_by_product_id(clf, model_dir, sample_records, tmp_path):
    """`clf.predict_proba(df.set_index("product_id"))` used to say "row 1: field 'product_id': missing or empty"."""
    df = pd.DataFrame(sample_records[:12]).drop_duplicates("product_id")
    want = clf.predict_proba(df)
    indexed = df.set_index("product_id")
    np.testing.assert_allclose(clf.predict_proba(indexed), want, atol=1e-6)
    frame = clf.predict_proba(indexed, as_frame=True)
    assert list(frame.index) == list(df["product_id"]) and frame.index.name == "product_id"
    with pytest.raises(TypeError, match=r"label_file labels a records file .* found a DataFrame: write it first "
                                        r"\(a DataFrame: df.to_parquet"):
        label_file(model_dir, indexed, tmp_path / "labels.csv")
    assert not (tmp_path / "labels.csv").exists()


def test_predict_proba_refuses_a_record_without_a_channel_the_model_reads(channel_model_dir, channel_records):
    """The core validates against the model's record_rules(): a DataFrame row without `orders` is refused (not read
    as zeros) or, with on_error="skip", kept as a NaN row and reported."""
    clf = trendnlp.load_model(channel_model_dir)
    df = pd.DataFrame(channel_records[:4])
    df.loc[1, "orders"] = None
    with pytest.raises(RecordError, match=r"<DataFrame>: row 2 .*field 'orders': missing, but the model reads the "
                                          r"`orders` channel"):
        clf.predict_proba(df)
    report = ErrorReport()
    proba = clf.predict_proba(df, on_error="skip", report=report)
    assert np.isnan(proba[1]).all() and np.isfinite(np.delete(proba, 1, axis=0)).all()
    assert [(e.row, e.field) for e in report.errors] == [(2, "orders")]
    np.testing.assert_allclose(np.delete(proba, 1, axis=0), clf.predict_proba(df.drop(index=1)), atol=1e-6)
    with pytest.raises(RecordError, match="field 'price'"):
        clf.predict([{**channel_records[0], "price": None}])


# ---- nothing in, and predict_proba(df, as_frame=True) --------------------------------------------------------
def test_predict_proba_of_nothing_has_shape_0_by_3(world):
    clf = TrendClassifier.from_pretrained(world / "model")
    assert clf.predict_proba([]).shape == (0, 3)
    assert clf.predict_proba(pd.DataFrame(columns=["product_id", "sales"])).shape == (0, 3)
    assert clf.predict([]) == []
    assert clf.predict_proba([], as_frame=True).shape == (0, 3)


def test_predict_proba_as_frame_is_indexed_like_the_input(world):
    clf = TrendClassifier.from_pretrained(world / "model")
    recs = make_records(3, 2)
    df = pd.DataFrame(recs, index=pd.Index([f"row{i}" for i in range(len(recs))], name="key"))
    df.loc["row2", "sales"] = [1, -2]  # a bad record keeps its row under on_error="skip", as NaN
    frame = clf.predict_proba(df, as_frame=True, on_error="skip")
    assert isinstance(frame, pd.DataFrame)
    assert frame.index.equals(df.index) and list(frame.columns) == clf.labels
    plain = clf.predict_proba(df, on_error="skip")
    assert np.allclose(frame.to_numpy(), plain, equal_nan=True)
    assert frame.loc["row2"].isna().all() and not frame.drop(index="row2").isna().any().any()
    assert clf.predict_proba(recs[:2], as_frame=True).index.tolist() == [0, 1]


def test_predict_skip_keeps_rows_aligned_with_the_input(lora_model):
    good = {"product_id": "a", "sales": [1, 2, 3]}
    recs = [good, {"product_id": "b", "sales": [1, -2]}, {**good, "product_id": "c"}, {"sales": [1]}]
    report = ErrorReport()
    proba = lora_model.predict_proba(recs, on_error="skip", report=report)
    assert proba.shape == (4, 3)
    assert np.isnan(proba[[1, 3]]).all() and not np.isnan(proba[[0, 2]]).any()
    np.testing.assert_allclose(proba[[0, 2]], lora_model.predict_proba([recs[0], recs[2]]), atol=1e-6)
    assert [(e.row, e.field) for e in report.errors] == [(2, "sales"), (4, "product_id")]
    labels = lora_model.predict(pd.DataFrame(recs), on_error="skip")
    assert len(labels) == 4 and labels[1] is None and labels[3] is None and labels[0] in lora_model.labels


def test_labeler_cache_is_thread_safe(lora_model_dir):
    clf = TrendClassifier.from_pretrained(lora_model_dir)
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
