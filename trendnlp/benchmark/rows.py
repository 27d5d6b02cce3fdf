"""The benchmark's table rows: one run's entry (`run_row`), a variant's row over its seeds (`aggregate`), the
`fused` row chosen on validation (`select_fused`) and the new-product slice (`new_product_mask`, `slice_row`)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trendnlp.labels import LABELS

FUSED_PREFIX = "fused_"
CALIBRATION_KEYS = ("ece_before", "ece_after", "brier_before", "brier_after")  # test, mean over seeds
NEW_PRODUCT_AGE = 8  # the new-product slice, first sale at most 8 periods before the cutoff


def run_row(result: dict, test: dict, val_macro_f1: float, seed: int, seconds: float) -> dict:
    """One run's entry of a table row: the test metrics, validation macro-F1, epochs and timing."""
    return {"seed": seed, "accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "f1_per_class": test["f1"],
            "precision_per_class": test["precision"], "recall_per_class": test["recall"],
            "confusion_matrix": test["confusion_matrix"], "val_macro_f1": val_macro_f1,
            "best_epoch": result["best_epoch"], "epochs": result["epochs"],
            "val_curve": [h["validation"]["macro_f1"] for h in result["history"]],
            "model_dir": result["model_dir"], "seconds": round(seconds, 1),
            "calibration": test.get("calibration")}  # test ECE / Brier before and after the temperature


def slice_row(records: Sequence[dict], pred: np.ndarray, mask: np.ndarray | None) -> dict:
    """{"slice_macro_f1": ...} of class indices `pred` on the masked records, as every baseline row gets it."""
    from trendnlp.benchmark.baselines import slice_score

    return slice_score([r["label"] for r in records], [LABELS[i] for i in pred], mask)


def new_product_mask(records: Sequence[dict], max_age: int = NEW_PRODUCT_AGE) -> np.ndarray | None:
    """The new-product slice: records whose product first sold at most `max_age` periods before the
    cutoff, from each record's `first_sale`; None when a record lacks it (e.g. records prepared elsewhere).

    >>> new_product_mask([{"cutoff": "2011-10-23", "first_sale": "2011-09-04", "freq": "W"},
    ...                   {"cutoff": "2011-10-23", "first_sale": "2010-12-05", "freq": "W"}]).tolist()
    [True, False]
    """
    import datetime as dt

    if not records or any(not r.get("first_sale") or not r.get("cutoff") for r in records):
        return None
    days = {"W": 7, "D": 1, "M": 30.44}
    age = np.array([(dt.date.fromisoformat(r["cutoff"]) - dt.date.fromisoformat(r["first_sale"])).days
                    / days[r.get("freq") or "W"] for r in records])
    return np.round(age) <= max_age


def aggregate(name: str, runs: list[dict]) -> dict:
    """One table row from the runs of one variant: means, and spread (std, min) of macro-F1 over seeds."""
    f1 = np.array([r["macro_f1"] for r in runs])
    acc = np.array([r["accuracy"] for r in runs])
    return {"name": name, "kind": "neural", "accuracy": float(acc.mean()), "macro_f1": float(f1.mean()),
            "f1_per_class": {c: float(np.mean([r["f1_per_class"][c] for r in runs])) for c in LABELS},
            "seeds": [r["seed"] for r in runs], "macro_f1_std": float(f1.std()), "macro_f1_min": float(f1.min()),
            "accuracy_std": float(acc.std()), "val_macro_f1": float(np.mean([r["val_macro_f1"] for r in runs])),
            "confusion_matrix": np.sum([r["confusion_matrix"] for r in runs], axis=0).tolist(),
            "seconds": round(sum(r["seconds"] for r in runs), 1), "runs": runs,
            **{k: float(np.mean([r["calibration"][k] for r in runs])) for k in CALIBRATION_KEYS
               if all(r.get("calibration") for r in runs)},
            **{k: float(np.mean([r[k] for r in runs])) for k in ("slice_macro_f1", "change_mae",
                                                                   "persistence_change_mae")
               if all(k in r for r in runs)}}


def select_fused(rows: Sequence[dict]) -> dict | None:
    """The fusion row with the best mean validation macro-F1, copied as `fused` (None without fusion rows)."""
    fusion = [r for r in rows if r["name"].startswith(FUSED_PREFIX)]
    if not fusion:
        return None
    best = max(fusion, key=lambda r: r["val_macro_f1"])
    return {**best, "name": "fused", "variant": best["name"],
            "selected_by": "best mean validation macro-F1 among " + ", ".join(r["name"] for r in fusion)}
