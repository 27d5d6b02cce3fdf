"""The LightGBM peers (gbm_all, gbm_all_text: the boosting branch used alone): their features on hand-made
records, fitting on tiny data, the text PCA fitted on training texts only, and validation-only choices."""
from __future__ import annotations

import numpy as np
import pytest

from trendnlp.benchmark import gbm
from trendnlp.labels import LABELS, LabelRule
from trendnlp.model import boosting
from trendnlp.model import boosting_features as bf

pytest.importorskip("lightgbm")


def _col(X: np.ndarray, name: str) -> np.ndarray:
    return X[:, bf.channel_feature_names().index(name)]


def test_channel_features_by_hand():
    rec = {"sales": [4.0] * 22 + [8.0] * 4, "orders": [2.0] * 22 + [4.0] * 4, "customers": [1.0] * 22 + [3.0] * 4,
           "market_sales": [100.0] * 26, "price": [None] * 20 + [2.0] * 5 + [4.0],
           "cutoff": "2011-10-23", "first_sale": "2011-06-05"}
    X = bf.channel_matrix([rec], LabelRule())
    assert X.shape == (1, len(bf.channel_feature_names()))
    assert _col(X, "week_of_year")[0] == 42 and _col(X, "month")[0] == 10 and _col(X, "age_periods")[0] == 20
    assert _col(X, "orders_log_recent")[0] == pytest.approx(np.log1p(4))
    assert _col(X, "orders_change_recent_vs_previous")[0] == pytest.approx(np.log(5 / 3))  # (4+1)/(2+1)
    assert _col(X, "units_per_order_recent")[0] == pytest.approx(np.log(9 / 5))
    assert _col(X, "customers_per_order_recent")[0] == pytest.approx(np.log(4 / 5))
    assert _col(X, "price_rel_median")[0] == pytest.approx(np.log(2.0))  # last known 4.0 vs median 2.0
    assert _col(X, "market_sales_change_recent_vs_all")[0] == pytest.approx(0.0)


def test_missing_channels_are_nan_not_zero():
    """A log without invoices or customers gives NaN columns (LightGBM's missing values), never invented zeros."""
    X = bf.channel_matrix([{"sales": [1.0, 2.0, 3.0], "cutoff": "2011-06-05"}], LabelRule())
    for name in ("orders_log_recent", "customers_log_t-0", "units_per_order_recent", "price_rel_median",
                 "age_periods"):
        assert np.isnan(_col(X, name)[0]), name
    assert np.isfinite(bf.feature_matrix([{"sales": [1.0, 2.0], "cutoff": "2011-06-05"}],
                                         LabelRule())[:, :len(bf.SALES_FEATURE_NAMES)]).all()


def _records(n: int, seed: int, cutoff: str) -> list[dict]:
    """The label is readable from the orders channel only (sales are noise): gbm_all must use the channel."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = LABELS[rng.integers(3)]
        trend = {"rising": 3.0, "falling": 0.3, "stable": 1.0}[label]
        orders = [5.0] * 22 + [5.0 * trend] * 4
        out.append({"product_id": f"p{i}", "title": f"{label} mug" if i % 2 else "mug", "sales":
                    rng.poisson(10, 26).astype(float).tolist(), "orders": orders, "customers": orders,
                    "market_sales": [500.0] * 26, "cutoff": cutoff, "freq": "W", "label": label})
    return out


@pytest.fixture
def small_grid(monkeypatch):
    monkeypatch.setattr(gbm.GBMAllBaseline, "grid", gbm.GBMAllBaseline.grid[:1])
    monkeypatch.setattr(gbm.GBMAllBaseline, "max_rounds", 40)


def test_gbm_all_learns_from_the_orders_channel(small_grid):
    train, val, test = _records(300, 0, "2011-06-05"), _records(90, 1, "2011-07-03"), _records(90, 2, "2011-08-07")
    model = gbm.GBMAllBaseline(LabelRule(), seed=0).fit(train, val)
    proba = model.predict_proba(test)
    assert proba.shape == (90, 3) and np.allclose(proba.sum(1), 1)
    acc = np.mean([p == r["label"] for p, r in zip(model.predict(test), test)])
    assert acc > 0.9 and model.val_macro_f1_ > 0.9
    assert 1 <= model.params_["rounds"] <= 40  # chosen by early stopping on validation
    again = gbm.GBMAllBaseline(LabelRule(), seed=0).fit(train, val)
    assert np.allclose(again.predict_proba(test), proba)  # deterministic for a seed


def test_gbm_all_text_pca_is_fitted_on_train_texts_only(small_grid, tiny_bert_dir, monkeypatch):
    train, val = _records(120, 0, "2011-06-05"), _records(60, 1, "2011-07-03")
    for r in val:
        r["title"] = "a text only validation has"
    seen: list[list[str]] = []
    real = boosting.text_embeddings
    monkeypatch.setattr(boosting, "text_embeddings", lambda texts, base: seen.append(list(texts)) or real(texts, base))
    model = gbm.GBMAllTextBaseline(LabelRule(), seed=0, base_model=tiny_bert_dir).fit(train, val)
    assert set(seen[0]) == {r["title"] for r in train}  # the PCA's fit: distinct training texts, nothing else
    assert model.branch_.pca_[1].shape[0] == 3  # four distinct texts in train: 3 components
    X = model.branch_.matrix(val)
    assert X.shape == (60, len(bf.feature_names()) + 3)
    assert model.predict_proba(val).shape == (60, 3)


def test_text_embeddings_are_mean_pooled_and_cached(tiny_bert_dir, monkeypatch):
    """Each text's embedding is the mean of its tokens' last hidden states, padding left out (transformers, one text
    at a time: no padding at all); a text seen before comes from the cache, without loading the encoder again."""
    import torch
    from transformers import AutoTokenizer, BertModel

    import trendnlp.model.base_models as base_models

    texts = ["red mug", "a blue lamp for long winter evenings", "red mug"]
    a = boosting.text_embeddings(texts, tiny_bert_dir)
    tok, bert = AutoTokenizer.from_pretrained(tiny_bert_dir), BertModel.from_pretrained(tiny_bert_dir).eval()
    assert a.shape == (3, bert.config.hidden_size) and a.dtype == np.float32
    with torch.inference_mode():
        for text, got in zip(texts, a):
            enc = tok(text, truncation=True, max_length=boosting.TEXT_MAX_LENGTH, return_tensors="pt")
            np.testing.assert_allclose(got, bert(**enc).last_hidden_state[0].mean(0).numpy(), atol=1e-5)

    def refuse(*args, **kwargs):
        raise AssertionError("the encoder was loaded again for texts it had embedded")

    monkeypatch.setattr(base_models, "load_base_model", refuse)
    marked = np.full_like(a[0], 7.0)  # what the cache holds is what comes back
    monkeypatch.setitem(boosting._EMBEDDINGS, (tiny_bert_dir, "red mug"), marked)
    again = boosting.text_embeddings(["red mug", texts[1]], tiny_bert_dir)
    np.testing.assert_array_equal(again, np.stack([marked, a[1]]))
