"""Which decision rule holds across the year? Per-class offsets compared on a backtest's saved models (a table).

A backtest (`trendnlp backtest --rows trendnlp,...`) keeps, at every origin, the saved hybrid model
(OUT/origin_*/runs/trendnlp/seed_0/model) and its train / validation / test records (OUT/origin_*/data/). This
script predicts each origin's validation and test records once per branch, raw (the neural branch's offsets set
to zero and its temperature to 1, the boosting branch as it is), and then applies each rule exactly as training
would, choosing on validation only:

    none   no offsets anywhere (the blend weight chosen on validation macro-F1 of the raw blend)
    half   offsets fitted on validation as today, then halved (shrunk toward zero), for the neural branch and
           for the blend alike (the weight chosen with them)
    full   today's rule: offsets fitted on validation for the neural branch, then for the blend at each weight

for the hybrid (the saved model's rule), and for each branch alone. The `full` hybrid column reproduces the
backtest's own `trendnlp` row (a check that the raw probabilities are right). Nothing neural is retrained, so a rule
that needs other validation weeks (a longer span) is not covered here.

--boosting-text refits each origin's boosting branch with the text PCA (model.boosting_text=true, the `gbm_all_text`
peer; its `none` column must equal that row of the backtest) and blends the saved neural branch with it instead.

    python scripts/experiments/decision_rules.py BACKTEST_OUT [BACKTEST_OUT ...] [--boosting-text] [--json rules.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RULES = {"none": 0.0, "half": 0.5, "full": 1.0}


def apply_rule(scale: float, val: dict, test: dict, y_val: np.ndarray, branch: str | None) -> tuple[float, float]:
    """(test macro-F1, weight) of the hybrid (branch None) or of one branch under offsets x scale."""
    from trendnlp.model.calibration import biased_scores, fit_logit_bias, fit_temperature, macro_f1_from_predictions
    from trendnlp.model.hybrid import calibrated

    C = val["neural"].shape[1]

    def offsets(p: np.ndarray) -> np.ndarray:
        return scale * fit_logit_bias(p, y_val) if scale else np.zeros(C, dtype=np.float32)

    y_test = test["y"]
    if branch == "boosting":
        b = offsets(val["boosting"])
        return macro_f1_from_predictions(y_test, biased_scores(test["boosting"], b).argmax(1), C), 0.0
    b_n = offsets(val["neural"])  # the neural branch's own offsets, then its temperature (as training fits them)
    T = fit_temperature(calibrated(val["neural"], b_n, 1.0), y_val)
    pn_val, pn_test = calibrated(val["neural"], b_n, T), calibrated(test["neural"], b_n, T)
    if branch == "neural":
        return macro_f1_from_predictions(y_test, pn_test.argmax(1), C), 1.0
    best = (-1.0, 0.0, np.zeros(C))
    for w in np.round(np.linspace(0, 1, 11), 4):
        p = w * pn_val + (1 - w) * val["boosting"]
        b = offsets(p)
        score = macro_f1_from_predictions(y_val, biased_scores(p, b).argmax(1), C)
        if score > best[0] + 1e-12:
            best = (score, float(w), b)
    _, w, b = best
    p = w * pn_test + (1 - w) * test["boosting"]
    return macro_f1_from_predictions(y_test, biased_scores(p, b).argmax(1), C), w


def raw_model(folder: Path):
    """The saved model with its neural branch's offsets set to zero and its temperature to 1 (raw)."""
    from trendnlp.model.load import load_model

    clf = load_model(folder)
    clf.logit_bias.zero_()
    clf.temperature.fill_(1.0)
    return clf


def text_booster(config, data: Path):
    """The origin's boosting branch refitted with the text PCA, as the training pipeline would build it."""
    from trendnlp.data.record_files.records import read_records
    from trendnlp.training.hybrid import make_branch

    h, rule = config.sales.history, config.labels.rule()
    train, val = (read_records(str(data / f"{k}.parquet"), history=h, rule=rule) for k in ("train", "validation"))
    return make_branch(config).fit(train, val)


def origin_rows(origin: Path, boosting_text: bool = False) -> dict:
    from trendnlp.config import TrendConfig
    from trendnlp.data.record_files.records import read_records

    run = origin / "runs" / "trendnlp"
    clf = raw_model(run / "seed_0" / "model")
    booster = None
    if boosting_text:
        config = TrendConfig.from_yaml(run / "seed_0" / "config.yaml", ["model.boosting_text=true"])
        booster = text_booster(config, origin / "data")
    val, test = {}, {}
    for part, d in (("validation", val), ("test", test)):
        records = read_records(str(origin / "data" / f"{part}.parquet"), **clf.record_rules())
        d["neural"] = clf.predict_proba(records, branch="neural")
        d["boosting"] = (booster.predict_proba(records) if booster is not None
                         else clf.predict_proba(records, branch="boosting"))
        d["y"] = np.array([clf.labels.index(r["label"]) for r in records])
    out = {}
    for rule, scale in RULES.items():
        for branch, name in ((None, "trendnlp"), ("neural", "trendnlp:neural"), ("boosting", "trendnlp:boosting")):
            f1, w = apply_rule(scale, val, test, val["y"], branch)
            out[f"{name} {rule}"] = {"macro_f1": f1, "weight": w}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("backtests", nargs="+", help="backtest output folders (with origin_*/runs/trendnlp/)")
    p.add_argument("--boosting-text", action="store_true", help="refit the boosting branch with the text PCA")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    per_origin, reference = {}, {}
    for bt in a.backtests:
        saved = json.loads((Path(bt) / "backtest.json").read_text())
        for origin in sorted(Path(bt).glob("origin_*")):
            key = origin.name.removeprefix("origin_")
            print(f"origin {key} ...", file=sys.stderr, flush=True)
            per_origin[key] = origin_rows(origin, a.boosting_text)
            reference[key] = {r: v["macro_f1"] for r, v in saved["per_origin"][key].items()}
    origins = sorted(per_origin)
    rows = list(per_origin[origins[0]])
    print("| row | " + " | ".join(origins) + " | mean | wins vs gbm_all+offsets |")
    print("|---|" + "---:|" * (len(origins) + 2))
    for row in rows:
        vals = [per_origin[o][row]["macro_f1"] for o in origins]
        wins = sum(v > reference[o]["gbm_all+offsets"] for v, o in zip(vals, origins))
        print(f"| {row} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {np.mean(vals):.4f} | {wins} |")
    for row in ("trendnlp", "gbm_all", "gbm_all+offsets", "gbm_all_text", "gbm_all_text+offsets"):
        vals = [reference[o].get(row, float("nan")) for o in origins]
        print(f"| {row} (the backtest's) | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {np.mean(vals):.4f} | |")
    if a.json:
        Path(a.json).write_text(json.dumps({"per_origin": per_origin, "backtest": reference}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
