"""Seed averaging: does the hybrid gain when its neural branch is the mean of several seeds' probabilities?

At every origin of a backtest (OUT/origin_*/data and the saved hybrid OUT/origin_*/runs/trendnlp/seed_0/model),
this script trains the hybrid's neural branch again with other seeds (the origin's own config, `model.kind=neural`,
no offsets, no temperature), averages the raw probabilities of the saved seed-0 branch and the new seeds, and
applies the decision rule without offsets exactly as `decision_rules.py` does (the blend weight chosen on
validation macro-F1; the neural branch's temperature fitted there). Rows: the saved hybrid (seed 0 alone) and the
hybrid with the seed mean, with each neural branch alone. Only validation makes a choice; test is scored.

    python scripts/experiments/seed_average.py BACKTEST_OUT [BACKTEST_OUT ...] --out RESULTS_DIR --seeds 1
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decision_rules import apply_rule, raw_model  # noqa: E402
from residual_learning import for_each_origin  # noqa: E402


def origin_result(origin: Path, out: Path, seeds: list[int]) -> dict:
    from trendnlp.config import TrendConfig
    from trendnlp.data.record_files.records import read_records
    from trendnlp.model.load import load_model
    from trendnlp.training import train as train_model

    run = origin / "runs" / "trendnlp" / "seed_0"
    clf = raw_model(run / "model")
    parts = {k: read_records(str(origin / "data" / f"{k}.parquet"), **clf.record_rules())
             for k in ("train", "validation", "test")}
    probs = {k: {"neural": [clf.predict_proba(parts[k], branch="neural")],
                 "boosting": clf.predict_proba(parts[k], branch="boosting"),
                 "y": np.array([clf.labels.index(r["label"]) for r in parts[k]])} for k in ("validation", "test")}
    seconds = []
    for seed in seeds:
        config = TrendConfig.from_yaml(run / "config.yaml", ["model.kind=neural", "train.calibrate_bias=false",
                                                            "train.calibrate_temperature=false", f"train.seed={seed}"])
        t0 = time.perf_counter()
        train_model(config, out / origin.name / f"seed_{seed}", progress=False,
                    splits=(parts["train"], parts["validation"], None))
        seconds.append(round(time.perf_counter() - t0, 1))
        m = load_model(out / origin.name / f"seed_{seed}" / "model")
        for k in ("validation", "test"):
            probs[k]["neural"].append(m.predict_proba(parts[k]))
    result = {"seconds_per_seed": seconds}
    for name, n in (("seed 0", 1), (f"mean of {len(seeds) + 1} seeds", len(seeds) + 1)):
        val, test = ({"neural": np.mean(probs[k]["neural"][:n], axis=0), "boosting": probs[k]["boosting"],
                      "y": probs[k]["y"]} for k in ("validation", "test"))
        f1, w = apply_rule(0.0, val, test, val["y"], None)
        result[f"trendnlp, {name}"] = {"macro_f1": float(f1), "weight": float(w)}
        result[f"neural alone, {name}"] = {"macro_f1": float(apply_rule(0.0, val, test, val["y"], "neural")[0])}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("backtests", nargs="+", help="backtest output folders (with origin_*/data and runs/trendnlp)")
    p.add_argument("--out", required=True, help="folder for the trained runs and results.json")
    p.add_argument("--seeds", default="1", help="the extra seeds, comma-separated (seed 0 is the saved model's)")
    p.add_argument("--origins", default="", help="comma-separated origins to run (default: all)")
    a = p.parse_args(argv)
    out, seeds = Path(a.out), [int(s) for s in a.seeds.split(",") if s]
    results = for_each_origin(a.backtests, out, a.origins, lambda origin: origin_result(origin, out, seeds))
    origins = sorted(results)
    rows = [r for r in results[origins[0]] if r != "seconds_per_seed"]
    print("| row | " + " | ".join(origins) + " | mean |")
    print("|---|" + "---:|" * (len(origins) + 1))
    for row in rows:
        vals = [results[o][row]["macro_f1"] for o in origins]
        print(f"| {row} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {np.mean(vals):.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
