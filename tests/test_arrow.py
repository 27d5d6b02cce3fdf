"""Arrow-backed training data: built once and cached, same records and scaling as the in-memory path."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from trendnlp.config import TrendConfig
from trendnlp.data.inputs.arrow import build_record_dataset
from trendnlp.data.inputs.arrow_rows import ArrowRecords
from trendnlp.data.inputs.arrow_texts import tokenize_texts
from trendnlp.data.inputs.features import build_text
from trendnlp.data.record_files.io import write_records
from trendnlp.data.record_files.records import read_records
from trendnlp.data.record_files.io import ErrorReport
from trendnlp.labels import LabelRule
from trendnlp.model.classifier import TrendClassifier
from trendnlp.training import train


def test_dataset_rows_equal_read_records_and_cache_is_reused(sample_records, tiny_config, tmp_path):
    write_records(sample_records, tmp_path / "r.parquet")
    expected = read_records(tmp_path / "r.parquet", history=26)
    ds, stats = build_record_dataset(tmp_path / "r.parquet", tmp_path / "cache", history=26, rule=LabelRule())
    assert not stats["cached"] and len(ds) == stats["n"] == len(expected)
    row = {k: v for k, v in ds[7].items() if k != "product_code"}
    assert row == expected[7]
    assert stats["label_counts"] == {lab: sum(r["label"] == lab for r in expected) for lab in stats["label_counts"]}
    ref = TrendClassifier(tiny_config).fit_feature_scaling(expected).sales_encoder
    enc = TrendClassifier(tiny_config).sales_encoder
    enc.set_summary_scaler(stats["summary_mean"], stats["summary_std"])  # the one pass's mean and std
    np.testing.assert_allclose(enc.summary_mean.numpy(), ref.summary_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(enc.summary_std.numpy(), ref.summary_std.numpy(), rtol=1e-4, atol=1e-6)
    again, stats2 = build_record_dataset(tmp_path / "r.parquet", tmp_path / "cache", history=26, rule=LabelRule())
    assert stats2["cached"] and len(again) == len(ds)
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_skipped_rows_are_reported_also_from_the_cache(sample_records, tmp_path):
    rows = [dict(r) for r in sample_records[:20]] + [{"product_id": "bad", "sales": [-1.0]}, dict(sample_records[0])]
    write_records(rows[:20], tmp_path / "r.jsonl")
    with open(tmp_path / "r.jsonl", "a") as f:
        f.write(json.dumps({"product_id": "bad", "sales": [-1.0]}) + "\n")
    for _ in range(2):
        report = ErrorReport()
        ds, _ = build_record_dataset(tmp_path / "r.jsonl", tmp_path / "cache", history=26, rule=LabelRule(),
                                     on_error="skip", report=report)
        assert len(ds) == 20 and len(report) == 1 and report.errors[0].field == "sales"


def test_arrow_training_equals_in_memory_training(tiny_config, data_files, tmp_path):
    results = {}
    for arrow in (False, True):
        d = tiny_config.to_dict()
        d["data"].update(train=data_files["train"], validation=data_files["validation"], arrow=arrow)
        d["train"].update(group_by_product=False, class_weights=True)
        results[arrow] = train(TrendConfig.from_dict(d), tmp_path / str(arrow), progress=False)
    assert (tmp_path / "True" / "data_cache").is_dir()
    assert results[True]["validation"]["macro_f1"] == pytest.approx(results[False]["validation"]["macro_f1"], abs=1e-6)
    assert results[True]["history"][0]["train_loss"] == pytest.approx(results[False]["history"][0]["train_loss"],
                                                                      rel=1e-4)


def test_arrow_records_remap_and_pickle_as_a_path(sample_records, tmp_path):
    write_records(sample_records, tmp_path / "r.parquet")
    ds, stats = build_record_dataset(tmp_path / "r.parquet", tmp_path / "cache", history=26, rule=LabelRule())
    rows = ArrowRecords(Path(stats["folder"]) / "records.arrow", remap_rows=3)
    order = [5, 0, 199, 7, 7, 42, 3, 150]
    assert len(rows) == len(ds) and rows.__getitems__(order) == ds.__getitems__(order)  # across remaps
    assert [rows[i] for i in order] == ds.__getitems__(order)
    np.testing.assert_array_equal(rows.column("product_code"), np.asarray(ds["product_code"]))
    blob = pickle.dumps(rows)  # DataLoader workers get the path, not the data
    assert len(blob) < 1000 and pickle.loads(blob)[42] == ds[42]


def test_stored_tokens_collate_like_tokenizing_the_texts(sample_records, tiny_config, tmp_path):
    recs = [dict(r) for r in sample_records]
    recs[3] = {**recs[3], "title": "", "description": "", "reviews": []}  # a record without text
    write_records(recs, tmp_path / "r.parquet")
    ds, stats = build_record_dataset(tmp_path / "r.parquet", tmp_path / "cache", history=26, rule=LabelRule(),
                                     text=tiny_config.text)
    assert ds[3]["text_code"] == -1 and stats["n_texts"] == len({build_text(r, tiny_config.text) for r in recs}) - 1
    model = TrendClassifier(tiny_config)
    tokens = tokenize_texts(stats["folder"], model.tokenizer, tiny_config.text.max_length)
    assert len(tokens) == stats["n_texts"]
    rows = ds.__getitems__(list(range(0, 40)))
    for dedup in (True, False):
        stored = model.make_collator(dedup=dedup, tokens=tokens)(rows)
        fresh = model.make_collator(dedup=dedup)(rows)
        assert stored.keys() == fresh.keys()
        for key in ("sales", "summary", "labels"):
            assert torch.equal(stored[key], fresh[key])
        assert torch.equal(stored["text_index"] >= 0, fresh["text_index"] >= 0)
        for a, b in ((stored, fresh),):  # each record's own text: the same ids and mask
            for i in range(len(rows)):
                ia, ib = int(a["text_index"][i]), int(b["text_index"][i])
                if ia >= 0:
                    n = int(a["attention_mask"][ia].sum())
                    assert n == int(b["attention_mask"][ib].sum())
                    assert torch.equal(a["input_ids"][ia, :n], b["input_ids"][ib, :n])
        assert stored["input_ids"].shape == fresh["input_ids"].shape
    # the tokens file is reused for the same tokenizer and length, and another length gets its own
    files = sorted(Path(stats["folder"]).glob("tokens-*.arrow"))
    tokenize_texts(stats["folder"], model.tokenizer, tiny_config.text.max_length)
    assert sorted(Path(stats["folder"]).glob("tokens-*.arrow")) == files
    short = tokenize_texts(stats["folder"], model.tokenizer, 8)
    assert len(list(Path(stats["folder"]).glob("tokens-*.arrow"))) == 2
    assert max(len(r["input_ids"]) for r in short.__getitems__(list(range(len(short))))) == 8


def test_a_build_without_any_text_collates_without_tokens(sample_records, tiny_config, tmp_path):
    recs = [{**r, "title": "", "description": "", "reviews": []} for r in sample_records[:30]]
    write_records(recs, tmp_path / "r.jsonl")
    ds, stats = build_record_dataset(tmp_path / "r.jsonl", tmp_path / "cache", history=26, rule=LabelRule(),
                                     text=tiny_config.text)
    assert stats["n_texts"] == 0 and set(ds["text_code"]) == {-1}
    model = TrendClassifier(tiny_config)
    assert tokenize_texts(stats["folder"], model.tokenizer, tiny_config.text.max_length) is None
    batch = model.make_collator(tokens=None)(ds.__getitems__(list(range(8))))
    assert batch["input_ids"].shape[0] == 0 and batch["text_index"].tolist() == [-1] * 8


def test_arrow_splits_name_the_file_of_an_unlabelled_record_and_need_validation(sample_records, tiny_config,
                                                                                tmp_path):
    from trendnlp.data.inputs.arrow import load_arrow_splits

    write_records(sample_records[:20], tmp_path / "train.jsonl")
    bare = [{k: v for k, v in r.items() if k not in ("label", "future_sales")} for r in sample_records[20:25]]
    write_records(bare, tmp_path / "val.jsonl")
    d = tiny_config.to_dict()
    d["data"].update(train=str(tmp_path / "train.jsonl"), arrow=True)
    with pytest.raises(ValueError, match="data.arrow=true needs data.train and data.validation"):
        load_arrow_splits(TrendConfig.from_dict(d), tmp_path / "cache")
    d["data"]["validation"] = str(tmp_path / "val.jsonl")
    with pytest.raises(ValueError, match=r"validation records \(.*val.jsonl\): product_id=.* has neither `label`"):
        load_arrow_splits(TrendConfig.from_dict(d), tmp_path / "cache")
    d["data"]["validation"] = str(tmp_path / "train.jsonl")
    train_recs, val_recs, test_recs, stats = load_arrow_splits(TrendConfig.from_dict(d), tmp_path / "cache")
    assert len(train_recs) == len(val_recs) == stats["n"] == 20 and test_recs is None


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_a_fed_channel_some_record_lacks_is_refused_and_leaves_no_cache(channel_records, tmp_path, fmt):
    """With the model's sales config the build refuses a channel that any record lacks (here the last one), removes
    what it began (the folders it created), and a cached build is refused the same way."""
    from trendnlp.config import SalesConfig
    from trendnlp.errors import ConfigError

    rows = [dict(r) for r in channel_records]
    rows[-1]["orders"] = None  # the last row, in the last batch
    path = tmp_path / f"r.{fmt}"
    write_records(rows, path)
    kw = dict(history=26, rule=LabelRule(), sales=SalesConfig(channels=["orders"]))
    with pytest.raises(ConfigError, match=rf"r.{fmt}: the config feeds the `orders` channel"):
        build_record_dataset(path, tmp_path / "run" / "data_cache", **kw)
    assert not (tmp_path / "run").exists()
    _, stats = build_record_dataset(path, tmp_path / "cache", history=26, rule=LabelRule())  # nothing required
    assert stats["carried"] == ["price"]
    with pytest.raises(ConfigError, match="`orders` channel"):
        build_record_dataset(path, tmp_path / "cache", **kw)
    _, stats = build_record_dataset(path, tmp_path / "cache", **{**kw, "sales": SalesConfig(price_channels=True)})
    assert stats["cached"]
