"""Arrow-backed training data: built once and cached, same records and scaling as the in-memory path."""
from __future__ import annotations

import json

import numpy as np
import pytest

from trendnlp.config import TrendConfig
from trendnlp.data.arrow import GroupedIndexSampler, build_record_dataset, scaling_rows
from trendnlp.data.records import ErrorReport, read_records, write_records
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
    enc.fit_summary_scaler(scaling_rows(stats))
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


def test_grouped_sampler_is_a_seeded_permutation_keeping_products_together():
    codes = np.repeat(np.arange(50), 8)
    s = GroupedIndexSampler(codes, seed=1, chunk=4)
    order = list(s)
    assert sorted(order) == list(range(len(codes))) and order == list(s)
    s.set_epoch(1)
    assert list(s) != order
    runs = sum(codes[a] != codes[b] for a, b in zip(order, order[1:]))
    assert runs < len(codes) // 2  # mostly same-product neighbours


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
