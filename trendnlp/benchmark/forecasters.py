"""Classical forecasters as benchmark rows: forecast the next weeks, then apply the label rule.

    history (26 weeks) --statsforecast model--> F future weeks --mean--> future
    change = log((future + alpha) / (recent + alpha))                      (trendnlp.labels)
    rising if change >= t_rise, falling if change <= -t_fall, stable otherwise

The two thresholds are fitted on validation (grid, max macro-F1), just as our model's logit offsets are:
a point forecast of an intermittent series is smoothed toward its mean, so the rule's own thresholds
(log 1.25) would call almost everything stable. Test is never used to choose. statsforecast is an optional
extra (`pip install trendnlp[forecast]`) and is imported only here, inside the functions.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from trendnlp.labels import LABELS, LabelRule
from trendnlp.model.calibration import macro_f1_from_predictions

FORECASTERS = ("AutoETS", "CrostonOptimized", "ADIDA", "IMAPA")
INSTALL_HINT = "pip install trendnlp[forecast]"
THRESHOLDS = np.round(np.linspace(0.0, 1.0, 41), 3)  # log-ratio thresholds tried for rising and falling
_RISING, _FALLING, _STABLE = (LABELS.index(n) for n in ("rising", "falling", "stable"))


def statsforecast_available() -> bool:
    """True when the optional statsforecast package imports."""
    try:
        import statsforecast  # noqa: F401
    except ImportError:
        return False
    return True


def forecast_means(records: Sequence[dict], names: Sequence[str] = FORECASTERS, horizon: int = 4,
                   n_jobs: int = 1) -> dict[str, np.ndarray]:
    """Mean forecast of the next `horizon` periods of every record's `sales`, per model.

    Args:
        records: normalised records (only `sales` is read; histories may differ in length).
        names: models from FORECASTERS.
        horizon: periods forecast (the rule's F).
        n_jobs: statsforecast worker processes.
    Returns:
        {name: (n,) float64 mean forecast, clipped at 0}; a series too short for a model gets its mean.

    >>> forecast_means([{"sales": [1.0] * 10}], ["ADIDA"], horizon=2)["ADIDA"].round(2).tolist()
    [1.0]
    """
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast import models as sfm

    unknown = sorted(set(names) - set(FORECASTERS))
    if unknown:
        raise ValueError(f"unknown forecaster(s) {unknown}; known: {list(FORECASTERS)}")
    if not records:
        return {n: np.zeros(0) for n in names}
    lengths = np.array([len(r["sales"]) for r in records])
    ids = np.repeat(np.arange(len(records)), lengths)
    ds = np.concatenate([np.arange(n) for n in lengths])  # integer periods: statsforecast's freq=1
    y = np.concatenate([np.asarray(r["sales"], dtype=np.float64) for r in records])
    df = pd.DataFrame({"unique_id": ids, "ds": ds, "y": y})
    models = [sfm.AutoETS(season_length=1) if n == "AutoETS" else getattr(sfm, n)() for n in names]
    # a series too short for a model (ETS needs a few periods) falls back to the historic average
    fc = StatsForecast(models=models, freq=1, n_jobs=n_jobs, fallback_model=sfm.HistoricAverage()).forecast(
        df=df, h=horizon)
    fc = fc.sort_values(["unique_id", "ds"])
    return {n: np.clip(fc[n].to_numpy(dtype=np.float64).reshape(len(records), horizon).mean(1), 0.0, None)
            for n in names}


def forecast_change(records: Sequence[dict], future: np.ndarray, rule: LabelRule) -> np.ndarray:
    """The label rule's `change` with the forecast mean in place of the true future: (n,) log ratios."""
    recent = np.array([np.mean(r["sales"][-rule.K:]) for r in records], dtype=np.float64)
    return np.log((future + rule.alpha) / (recent + rule.alpha))


def threshold_labels(change: np.ndarray, t_rise: float, t_fall: float) -> np.ndarray:
    """Class indices (LABELS order): rising at change >= t_rise, falling at <= -t_fall, else stable.

    >>> [LABELS[i] for i in threshold_labels(np.array([0.5, -0.5, 0.0]), 0.2, 0.2)]
    ['rising', 'falling', 'stable']
    """
    out = np.full(len(change), _STABLE)
    out[change <= -t_fall] = _FALLING
    out[change >= t_rise] = _RISING
    return out


def fit_thresholds(change: np.ndarray, y: np.ndarray, grid: np.ndarray = THRESHOLDS) -> tuple[float, float]:
    """(t_rise, t_fall) from the grid with the best macro-F1 of `threshold_labels` against y (class indices).

    >>> fit_thresholds(np.array([0.3, 0.1, -0.3, 0.0]), np.array([0, 2, 1, 2]), np.array([0.05, 0.2]))
    (0.2, 0.05)
    """
    best = (-1.0, 0.0, 0.0)
    for tr in grid:
        for tf in grid:
            score = macro_f1_from_predictions(np.asarray(y), threshold_labels(change, tr, tf), len(LABELS))
            if score > best[0] + 1e-12:
                best = (score, float(tr), float(tf))
    return best[1], best[2]


def run_forecasters(val: Sequence[dict], test: Sequence[dict], rule: LabelRule,
                    names: Sequence[str] = FORECASTERS, n_jobs: int = 1) -> list[dict]:
    """Forecast validation and test records, fit each model's thresholds on validation, label test.

    Args:
        val, test: labelled normalised records.
        rule: the benchmark's label rule (K, F, alpha).
        names: models from FORECASTERS.
        n_jobs: statsforecast worker processes.
    Returns:
        one dict per model: name, val_macro_f1, params (t_rise, t_fall), predictions (test class indices),
        seconds (forecasting both parts and fitting).
    """
    yv = np.array([LABELS.index(r["label"]) for r in val])
    rows = []
    for name in names:
        t0 = time.perf_counter()
        change_v = forecast_change(val, forecast_means(val, [name], rule.F, n_jobs)[name], rule)
        change_t = forecast_change(test, forecast_means(test, [name], rule.F, n_jobs)[name], rule)
        t_rise, t_fall = fit_thresholds(change_v, yv)
        val_f1 = macro_f1_from_predictions(yv, threshold_labels(change_v, t_rise, t_fall), len(LABELS))
        rows.append({"name": name, "val_macro_f1": val_f1, "params": {"t_rise": t_rise, "t_fall": t_fall},
                     "predictions": threshold_labels(change_t, t_rise, t_fall),
                     "seconds": round(time.perf_counter() - t0, 1)})
    return rows
