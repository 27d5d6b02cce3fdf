"""Context inputs (price, shop-wide units, first sale) and the change head: built leakage-safe by prepare,
kept by the record reader, turned into sales channels, saved with the model, and trained multi-task."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import torch

from trendnlp.config import SalesConfig, TrendConfig
from trendnlp.data.record_files.channels import price_features
from trendnlp.data.inputs.features import sales_channel_names, sales_features
from trendnlp.data.orderlog.prepare import prepare
from trendnlp.data.record_files.io import write_records
from trendnlp.data.record_files.records import read_records
from trendnlp.data.record_files.io import RecordError
from trendnlp.labels import LabelRule
from trendnlp.model.classifier import TrendClassifier

SUNDAY = dt.date(2024, 1, 7)


def _log(tail_price: float = 2.0, tail_units: int = 3, extra_product: bool = True) -> pd.DataFrame:
    """Two products over 10 weeks; `tail_*` change only weeks 7..9 (after the cutoffs checked below)."""
    rows = []
    for i in range(10):
        day = (SUNDAY + dt.timedelta(weeks=i)).isoformat()
        late = i >= 7
        rows.append(("a", day, tail_units if late else 5, tail_price if late else 1.0 + 0.1 * i))
        if extra_product and i >= 3:
            rows.append(("b", day, 100 if late else 2, 4.0))
    return pd.DataFrame(rows, columns=["product_id", "timestamp", "units", "price"])


def _by_key(result):
    return {(r["product_id"], r["cutoff"]): r for r in result.records}


def test_prepare_context_fields_cover_the_history_only():
    kw = dict(price_col="price", history=4, horizon=2, min_history_units=0, progress=False)
    base, changed = _by_key(prepare(_log(), **kw)), _by_key(prepare(_log(99.0, 50), **kw))
    cut = (SUNDAY + dt.timedelta(weeks=6)).isoformat()  # last cutoff before the changed weeks 7..9
    rec = base[("a", cut)]
    assert rec["price"] == [1.3, 1.4, 1.5, 1.6] and len(rec["market_sales"]) == len(rec["sales"]) == 4
    assert rec["market_sales"] == [5 + 2] * 4  # both products' units in the same weeks
    assert rec["first_sale"] == SUNDAY.isoformat() and base[("b", cut)]["first_sale"] == (
        SUNDAY + dt.timedelta(weeks=3)).isoformat()
    assert rec["change"] == pytest.approx(LabelRule().change(rec["sales"], rec["future_sales"]))
    for key, r in base.items():  # whatever happens after a cutoff, its inputs are the same
        if key[1] <= cut:
            for field in ("sales", "price", "market_sales", "first_sale"):
                assert changed[key][field] == r[field], (key, field)
        assert r["first_sale"] <= r["cutoff"]
    assert changed[("a", cut)]["future_sales"] != rec["future_sales"]  # the change did reach the future


def test_prepare_without_price_column_has_no_price():
    res = prepare(_log(), history=4, horizon=2, min_history_units=0, progress=False)
    assert all("price" not in r or r["price"] is None for r in res.records)
    assert all(r["market_sales"] for r in res.records)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_context_fields_survive_writing_and_reading(tmp_path, fmt):
    res = prepare(_log(), price_col="price", history=4, horizon=2, min_history_units=0, progress=False)
    write_records(res.records, tmp_path / f"r.{fmt}")
    back = read_records(str(tmp_path / f"r.{fmt}"))
    for a, b in zip(res.records, back):
        assert b["price"] == a["price"] and b["market_sales"] == a["market_sales"]
        assert b["first_sale"] == a["first_sale"] and b["change"] == pytest.approx(a["change"])


def test_bad_context_fields_name_the_field():
    with pytest.raises(RecordError, match="price.*3 periods, but sales has 2"):
        read_records([{"product_id": "a", "sales": [1, 2], "price": [1.0, None, 2.0]}])
    with pytest.raises(RecordError, match="market_sales"):
        read_records([{"product_id": "a", "sales": [1, 2], "market_sales": [1, -5]}])
    with pytest.raises(RecordError, match="first_sale"):
        read_records([{"product_id": "a", "sales": [1], "first_sale": "soon"}])
    rec = read_records([{"product_id": "a", "sales": [1]}])[0]
    assert rec["price"] is None and rec["market_sales"] is None and rec["change"] is None


def test_price_and_market_channels():
    cfg = SalesConfig(history=6, price_channels=True, market_channels=True, calendar=False)
    assert sales_channel_names(cfg)[-3:] == ["price_rel", "price_change", "market"]
    rec = {"sales": [1, 0, 2, 2], "price": [2.0, None, 2.0, 4.0], "market_sales": [10, 10, 100, 1000]}
    x, _ = sales_features(rec, cfg)
    assert x.shape == (6, 9) and (x[:2] == 0).all()  # padding stays zero in every channel
    np.testing.assert_allclose(x[2:, 6], np.log([2, 2, 2, 4]) - np.log(2.0), atol=1e-6)  # median price 2
    np.testing.assert_allclose(x[2:, 7], [0, 0, 0, np.log(2)], atol=1e-6)  # carried forward over the gap
    m = np.log1p([10, 10, 100, 1000])
    np.testing.assert_allclose(x[2:, 8], m - m.mean(), atol=1e-6)
    bare, _ = sales_features({"sales": [1, 2]}, cfg)  # records without the fields: zeros, no error
    assert (bare[:, 6:] == 0).all()
    assert (price_features([None, None], 2) == 0).all()


def test_model_with_context_channels_round_trips(tmp_path):
    cfg = TrendConfig.from_dict({"text": {"enabled": False}, "sales": {"history": 6, "hidden_size": 8,
                                 "price_channels": True, "market_channels": True},
                                 "fusion": {"hidden_size": 16, "change_head": True}})
    recs = prepare(_log(), price_col="price", history=6, horizon=2, min_history_units=0, progress=False).records
    torch.manual_seed(0)
    model = TrendClassifier(cfg).fit_feature_scaling(recs)
    assert model.sales_encoder.lstm.input_size == 9
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["sales_channels"][-3:] == ["price_rel", "price_change", "market"] and meta["n_sales_channels"] == 9
    loaded = TrendClassifier.from_pretrained(tmp_path)
    np.testing.assert_allclose(loaded.predict_proba(recs), model.predict_proba(recs), atol=1e-6)
    np.testing.assert_allclose(loaded.predict_change(recs), model.predict_change(recs), atol=1e-6)
    # the channels matter: other prices give other probabilities
    moved = [{**r, "price": [None if p is None else p * (1 + i) for i, p in enumerate(r["price"])]} for r in recs]
    assert not np.allclose(loaded.predict_proba(moved), loaded.predict_proba(recs))


def test_change_head_learns_the_change():
    """Multi-task training: the regression head's Huber loss falls, and its target is the rule's change."""
    cfg = TrendConfig.from_dict({"text": {"enabled": False}, "sales": {"history": 8, "hidden_size": 16},
                                 "fusion": {"hidden_size": 32, "change_head": True, "dropout": 0.0}})
    rng = np.random.default_rng(0)
    recs = []
    for i in range(128):
        g = rng.uniform(-0.3, 0.3)
        units = rng.poisson(10 * np.exp(g * np.arange(12))).astype(float).tolist()
        recs.append({"product_id": f"p{i}", "sales": units[:8], "future_sales": units[8:]})
    recs = read_records(recs)
    torch.manual_seed(0)
    model = TrendClassifier(cfg).fit_feature_scaling(recs)
    batch = model.make_collator()(recs)
    target = [LabelRule().change(r["sales"], r["future_sales"]) for r in recs]
    np.testing.assert_allclose(batch["change_target"].numpy(), target, rtol=1e-5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(60):
        out = model(**batch)
        loss = out["loss"] + out["change_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(out["change_loss"].item())
    assert losses[-1] < 0.5 * losses[0]
    pred = model.predict_change(recs)
    assert np.corrcoef(pred, target)[0, 1] > 0.5
    with pytest.raises(ValueError, match="no change head"):
        TrendClassifier(TrendConfig.from_dict({"text": {"enabled": False}})).predict_change(recs)
