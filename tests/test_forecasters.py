"""Classical forecaster rows: statsforecast forecasts, the label rule with validation-fitted thresholds."""
from __future__ import annotations

import numpy as np
import pytest

from trendnlp.benchmark import forecasters as fc
from trendnlp.labels import LABELS, LabelRule

pytest.importorskip("statsforecast")


def _records(n: int, seed: int) -> list[dict]:
    """Trending series (steady growth / decay / flat) whose future continues the trend; labels by the rule."""
    rng = np.random.default_rng(seed)
    out, rule = [], LabelRule()
    for i in range(n):
        kind = i % 3
        growth = (1.12, 0.88, 1.0)[kind]
        level = rng.uniform(5, 30) * growth ** np.arange(30)
        units = rng.poisson(level).astype(float)
        sales, future = units[:26].tolist(), units[26:].tolist()
        out.append({"product_id": f"p{i}", "sales": sales, "future_sales": future,
                    "label": rule.label(sales, future)})
    return out


def test_thresholds_are_fitted_on_validation_and_applied():
    change = np.array([0.6, 0.3, 0.05, -0.05, -0.3, -0.6])
    y = np.array([LABELS.index(x) for x in ("rising", "rising", "stable", "stable", "falling", "falling")])
    t_rise, t_fall = fc.fit_thresholds(change, y)
    assert (fc.threshold_labels(change, t_rise, t_fall) == y).all()
    assert 0.05 < t_rise <= 0.3 and 0.05 < t_fall <= 0.3


def test_forecast_means_follow_the_history_and_differ_in_length():
    recs = [{"sales": [10.0] * 26}, {"sales": [0.0, 4.0, 4.0, 4.0]}]
    means = fc.forecast_means(recs, fc.FORECASTERS, horizon=4)
    for name in fc.FORECASTERS:
        assert means[name].shape == (2,) and (means[name] >= 0).all()
        assert means[name][0] == pytest.approx(10.0, rel=0.05)  # a flat series forecasts its level
    with pytest.raises(ValueError, match="unknown forecaster"):
        fc.forecast_means(recs, ["Prophet"])


def test_run_forecasters_beats_chance_on_trending_series():
    val, test = _records(90, 0), _records(90, 1)
    rows = fc.run_forecasters(val, test, LabelRule(), names=["AutoETS", "ADIDA"])
    assert [r["name"] for r in rows] == ["AutoETS", "ADIDA"]
    y = np.array([LABELS.index(r["label"]) for r in test])
    ets = rows[0]
    assert ets["predictions"].shape == (90,) and set(ets["params"]) == {"t_rise", "t_fall"}
    assert (ets["predictions"] == y).mean() > 0.6  # ETS follows a trend; the label rule keeps the direction
    assert 0 <= ets["val_macro_f1"] <= 1 and ets["seconds"] >= 0
