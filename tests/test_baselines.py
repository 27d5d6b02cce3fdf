"""Baselines: the rule baselines on hand-made series, the learned ones on tiny synthetic records."""
from __future__ import annotations

import numpy as np
import pytest

from trendnlp.benchmark import baselines as bl
from trendnlp.model import boosting_features as bf
from trendnlp.labels import LABELS, LabelRule

ROW_KEYS = {"name", "accuracy", "macro_f1", "f1_per_class", "precision_per_class", "recall_per_class",
            "confusion_matrix", "val_macro_f1", "params", "seconds"}
_WORDS = {"rising": "viral new trending", "falling": "clearance discontinued old", "stable": "classic basic staple"}


def _records(n: int, seed: int, cutoffs=("2011-06-05", "2011-06-12", "2011-07-03")) -> list[dict]:
    """Random series of 1..26 weeks; the label comes from the text words (learnable) for 80% of records."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = LABELS[rng.integers(3)]
        shown = label if rng.random() < 0.8 else LABELS[rng.integers(3)]
        sales = rng.poisson(rng.uniform(0, 20), size=rng.integers(1, 27)).astype(float).tolist()
        out.append({"product_id": f"p{i}", "title": f"{_WORDS[shown]} mug {i % 7}", "description": "",
                    "reviews": ["lovely"] if i % 3 == 0 else [], "sales": sales,
                    "cutoff": cutoffs[i % len(cutoffs)], "freq": "W", "label": label, "future_sales": None})
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """As in run_baselines: BLAS / OpenMP threads only slow these tiny fits down on shared cores."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture
def fast_hgb(monkeypatch):
    """A two-point, 20-iteration grid so the boosting tests stay fast."""
    monkeypatch.setattr(bl.SalesHGBBaseline, "grid", bl.SalesHGBBaseline.grid[:2])
    monkeypatch.setattr(bl.SalesHGBBaseline, "max_iter", 20)
    monkeypatch.setattr(bl.SalesHGBBaseline, "eval_every", 5)


@pytest.mark.parametrize("sales, expected", [
    ([1, 1, 1, 1, 5, 5, 5, 5], "rising"),
    ([5, 5, 5, 5, 1, 1, 1, 1], "falling"),
    ([3, 3, 3, 3, 3, 3, 3, 3], "stable"),
    ([0, 0, 9, 9, 9, 9], "rising"),  # K < length < 2K: the earlier part is the 2 periods before the newest 4
    ([7, 7, 0, 0], "stable"),  # length <= K: nothing to compare with
    ([9] * 20 + [2, 2, 2, 2, 2, 2, 2, 2], "stable"),  # only the newest 2K periods count
])
def test_persistence_and_mean_reversion_on_hand_made_series(sales, expected):
    rec = [{"sales": [float(x) for x in sales]}]
    assert bl.PersistenceBaseline(LabelRule()).predict(rec) == [expected]
    flipped = {"rising": "falling", "falling": "rising", "stable": "stable"}[expected]
    assert bl.MeanReversionBaseline(LabelRule()).predict(rec) == [flipped]


def test_persistence_uses_the_rule_parameters():
    rec = [{"sales": [4.0, 4.0, 6.0, 6.0]}]
    assert bl.PersistenceBaseline(LabelRule(K=2)).predict(rec) == ["rising"]  # (6+1)/(4+1) = 1.4 >= 1.25
    assert bl.PersistenceBaseline(LabelRule(K=2, tau=0.5)).predict(rec) == ["stable"]
    assert bl.PersistenceBaseline(LabelRule(K=2, alpha=10.0)).predict(rec) == ["stable"]  # 16/14 < 1.25


def test_persistence_matches_the_label_rule_on_random_series():
    rule = LabelRule()
    recs = _records(200, seed=1)
    got = bl.PersistenceBaseline(rule).predict(recs)
    for r, g in zip(recs, got):
        s = r["sales"]
        want = rule.label(s[-2 * rule.K : -rule.K], s[-rule.K :]) if len(s) > rule.K else "stable"
        assert g == want


def test_majority_predicts_the_most_frequent_training_label():
    train = [{"label": lab} for lab in ["stable", "falling", "falling", "rising"]]
    assert bl.MajorityBaseline().fit(train).predict([{}, {}]) == ["falling", "falling"]


def test_sales_matrix_shape_names_and_missing_cutoff():
    recs = _records(30, seed=2)
    recs[0] = {**recs[0], "cutoff": None, "sales": [0.0]}
    X = bf.sales_calendar_matrix(recs, LabelRule())
    assert X.shape == (30, len(bf.SALES_FEATURE_NAMES)) and np.isfinite(X).all()
    assert (X[0, -4:] == 0).all() and (X[1, -4:] != 0).any()  # calendar of an unknown cutoff is zeros
    assert X[0, bf.SALES_FEATURE_NAMES.index("history_periods")] == 1


@pytest.mark.parametrize("name", list(bl.BASELINES))
@pytest.mark.parametrize("with_val", [True, False])
def test_every_baseline_fits_and_predicts_valid_labels(name, with_val, fast_hgb):
    train, val, test = _records(240, 3), _records(60, 4), _records(50, 5, cutoffs=("2011-10-02",))
    test[0] = {**test[0], "title": "", "reviews": [], "cutoff": None}  # no text, no date
    (b,) = bl.make_baselines(LabelRule(), seed=0, names=[name])
    assert b.fit(train, val if with_val else None) is b
    pred = b.predict(test)
    assert len(pred) == len(test) and set(pred) <= set(LABELS) and all(type(p) is str for p in pred)
    assert b.predict([]) == []
    if hasattr(b, "params_"):
        assert (b.val_macro_f1_ is not None) == with_val
        assert with_val or b.params_ == b.default


def test_text_baseline_learns_the_words():
    b = bl.TextTfidfBaseline(LabelRule(), seed=0).fit(_records(300, 6), _records(100, 7))
    test = _records(200, 8)
    acc = np.mean([p == r["label"] for p, r in zip(b.predict(test), test)])
    assert acc > 0.7  # 80% of the texts name their label


def test_hgb_picks_iterations_on_validation(fast_hgb):
    b = bl.SalesHGBBaseline(LabelRule(), seed=0).fit(_records(200, 9), _records(80, 10))
    assert b.params_["max_iter"] % 5 == 0 and b.params_["max_iter"] <= 20
    assert b.model_.n_iter_ == b.params_["max_iter"] and 0 <= b.val_macro_f1_ <= 1


def test_make_baselines_registry():
    assert [b.name for b in bl.make_baselines(LabelRule(), 0)] == list(bl.BASELINES)
    with pytest.raises(ValueError, match="unknown baseline"):
        bl.make_baselines(LabelRule(), 0, ["nope"])


def test_run_baselines_rows_and_determinism(fast_hgb):
    train, val, test = _records(240, 11), _records(60, 12), _records(60, 13)
    probs: dict = {}
    names = [n for n in bl.BASELINES if n not in bl.NEEDS_LIGHTGBM]  # the LightGBM rows: tests/test_gbm.py
    rows = bl.run_baselines(train, val, test, LabelRule(), seed=3, progress=False, probs_out=probs, names=names)
    probabilistic = ("sales_logreg", "sales_hgb", "text_tfidf_logreg")
    assert [r["name"] for r in rows] == [n for b in names for n in (
        [b, f"{b}+offsets"] if b in probabilistic else [b])]
    assert sorted(probs) == sorted(probabilistic)
    for name, (pv, pt) in probs.items():
        assert pv.shape == (len(val), 3) and pt.shape == (len(test), 3) and np.allclose(pt.sum(1), 1)
        base = next(r for r in rows if r["name"] == name)
        assert (np.array(LABELS)[pt.argmax(1)] == np.array(bl.BASELINES[name](LabelRule(), 3).fit(
            train, val).predict(test))).all()  # predict_proba columns are in LABELS order
        assert base["params"] is None or "logit_bias" not in base["params"]
    for r in rows:
        if r["name"].endswith("+offsets"):
            assert len(r["params"]["logit_bias"]) == 3 and r["params"]["logit_bias"][-1] == 0
            base = next(b for b in rows if b["name"] == r["name"].split("+")[0])
            assert r["val_macro_f1"] >= base["val_macro_f1"] - 1e-9  # offsets never lower the score they maximise
            continue
        assert set(r) == ROW_KEYS
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 and 0 <= r["val_macro_f1"] <= 1
        for key in ("f1_per_class", "precision_per_class", "recall_per_class"):
            assert list(r[key]) == list(LABELS)
        cm = np.array(r["confusion_matrix"])
        assert cm.shape == (3, 3) and cm.sum() == len(test)
        assert np.isclose(np.trace(cm) / cm.sum(), r["accuracy"])
    again = bl.run_baselines(train, val, test, LabelRule(), seed=3, progress=False, names=names)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(rows) == strip(again)
    no_val = bl.run_baselines(train, None, test, LabelRule(), seed=3, progress=False, names=["sales_logreg"])
    assert len(no_val) == 1 and no_val[0]["val_macro_f1"] is None  # no offsets row without validation


def test_slice_column_scores_only_the_masked_records(fast_hgb):
    train, val, test = _records(240, 11), _records(60, 12), _records(60, 13)
    mask = np.arange(len(test)) < 20
    rows = bl.run_baselines(train, val, test, LabelRule(), seed=3, progress=False, names=["persistence"],
                            slice_mask=mask)
    pred = bl.PersistenceBaseline(LabelRule()).predict(test)
    assert rows[0]["slice_macro_f1"] == pytest.approx(bl._macro_f1([r["label"] for r in test[:20]], pred[:20]))
