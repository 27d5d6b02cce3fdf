"""Residual learning: does the neural branch add to the boosting branch when it learns only what the trees miss?

At every origin of a backtest (OUT/origin_*/data/{train,validation,test}.parquet and the hybrid's config in
OUT/origin_*/runs/trendnlp/seed_0/config.yaml) this script

1. fits the boosting branch exactly as the hybrid does (same grid, same validation, same seed): its log-probabilities
   are the base margin on validation and test;
2. gives every training record an honest margin: out-of-fold, from the same settings and rounds refitted on the other
   blocks of training weeks (contiguous blocks of cutoffs, `--folds`, with `--purge` cutoffs left out on each side of
   the held-out block so that no label horizon overlaps it). Folds by product would let a fold model learn a week's
   market-wide outcome from other products of the same week, a margin better than the one validation sees;
3. trains the neural model (the hybrid's own neural settings, no offsets, no temperature) on
   softmax(neural logits + margin): the network only corrects the trees;
4. scores test with argmax(margin + a * neural logits), a=1 (plain residual) and a chosen on validation from
   --scales (the neural part must earn its weight there), beside the boosting branch alone (a=0).

Only validation makes a choice; test is scored. Nothing here changes the library: the margin enters through a
collator wrapper and a forward wrapper, both local to this script.

    python scripts/experiments/residual_learning.py BACKTEST_OUT [BACKTEST_OUT ...] --out RESULTS_DIR
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

SCALES = (0.0, 0.25, 0.5, 0.75, 1.0)
MARGINS: dict[tuple[str, str], np.ndarray] = {}  # (product_id, cutoff) -> base margin (C,)


def _key(r: dict) -> tuple[str, str]:
    return str(r["product_id"]), str(r["cutoff"])


def install_margin() -> None:
    """Make TrendClassifier add each record's base margin (from MARGINS) to its logits, in training and eval."""
    import torch

    from trendnlp.model.classifier import TrendClassifier

    if getattr(TrendClassifier, "_residual", False):
        return
    forward, make_collator = TrendClassifier.forward, TrendClassifier.make_collator

    def margin_forward(self, *args, base_margin=None, **kwargs):
        out = forward(self, *args, **kwargs)
        if base_margin is not None:
            out["logits"] = out["logits"] + base_margin.to(out["logits"].dtype)
        return out

    class MarginCollator:
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, records):
            batch = self.inner(records)
            batch["base_margin"] = torch.from_numpy(np.stack([MARGINS[_key(r)] for r in records]))
            return batch

    def margin_collator(self, *args, **kwargs):
        return MarginCollator(make_collator(self, *args, **kwargs))

    TrendClassifier.forward, TrendClassifier.make_collator = margin_forward, margin_collator
    TrendClassifier._residual = True


def out_of_fold(branch, train: list[dict], folds: int, purge: int, by: str = "time") -> np.ndarray:
    """(n, C) log-probabilities of each training record from the branch's settings refitted without its block
    (by="time": contiguous blocks of cutoffs, purged; by="product": products hashed into `folds` groups)."""
    if by == "product":
        import zlib

        group = np.array([zlib.crc32(str(r["product_id"]).encode()) % folds for r in train])
        out = np.zeros((len(train), len(branch.labels)), np.float32)
        for k in range(folds):
            held = group == k
            fold = copy.copy(branch).refit([r for r, h in zip(train, held) if not h])
            out[held] = np.log(np.clip(fold.predict_proba([r for r, h in zip(train, held) if h]), 1e-7, 1.0))
        return out
    cutoffs = sorted({r["cutoff"] for r in train})
    position = {c: i for i, c in enumerate(cutoffs)}
    blocks = np.array_split(np.arange(len(cutoffs)), folds)
    pos = np.array([position[r["cutoff"]] for r in train])
    out = np.zeros((len(train), len(branch.labels)), np.float32)
    for block in blocks:
        lo, hi = block[0], block[-1]
        held = (pos >= lo) & (pos <= hi)
        fit_on = (pos < lo - purge) | (pos > hi + purge)
        fold = copy.copy(branch).refit([r for r, k in zip(train, fit_on) if k])
        out[held] = np.log(np.clip(fold.predict_proba([r for r, k in zip(train, held) if k]), 1e-7, 1.0))
    return out


def logits(model, records: list[dict], batch_size: int = 512) -> np.ndarray:
    """(n, C) logits of the loaded model with the base margin added (eval mode)."""
    import torch

    collate = model.make_collator()
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(records), batch_size):
            batch = collate(records[i:i + batch_size])
            batch.pop("labels", None)
            batch.pop("change_target", None)
            out.append(model(**batch)["logits"].float().numpy())
    return np.concatenate(out)


def origin_result(origin: Path, out: Path, folds: int, purge: int, seed: int, overrides: list[str],
                  by: str = "time") -> dict:
    from trendnlp.config import TrendConfig
    from trendnlp.data.record_files.records import read_records
    from trendnlp.model.calibration import macro_f1_from_predictions
    from trendnlp.model.load import load_model
    from trendnlp.training import train as train_model
    from trendnlp.training.hybrid import make_branch

    config = TrendConfig.from_yaml(origin / "runs" / "trendnlp" / "seed_0" / "config.yaml",
                                   ["model.kind=neural", "train.calibrate_bias=false",
                                    "train.calibrate_temperature=false", f"train.seed={seed}", *overrides])
    h, rule = config.sales.history, config.labels.rule()
    parts = {k: read_records(str(origin / "data" / f"{k}.parquet"), history=h, rule=rule)
             for k in ("train", "validation", "test")}
    t0 = time.perf_counter()
    branch = make_branch(config).fit(parts["train"], parts["validation"])
    base = {k: np.log(np.clip(branch.predict_proba(parts[k]), 1e-7, 1.0)).astype(np.float32)
            for k in ("validation", "test")}
    base["train"] = out_of_fold(branch, parts["train"], folds, purge, by)
    t_boost = time.perf_counter() - t0
    for k, recs in parts.items():
        MARGINS.update({_key(r): m for r, m in zip(recs, base[k])})
    install_margin()
    run = out / origin.name
    t0 = time.perf_counter()
    result = train_model(config, run, progress=False, splits=(parts["train"], parts["validation"], None))
    t_neural = time.perf_counter() - t0
    model = load_model(run / "model")
    labels = list(model.labels)
    y = {k: np.array([labels.index(r["label"]) for r in parts[k]]) for k in ("validation", "test")}
    z = {k: logits(model, parts[k]) - base[k] for k in ("validation", "test")}  # the neural correction alone

    def f1(part: str, a: float) -> float:
        return float(macro_f1_from_predictions(y[part], (base[part] + a * z[part]).argmax(1), len(labels)))

    best = max(SCALES, key=lambda a: (round(f1("validation", a), 6), -a))  # ties: the smaller weight
    oof = np.mean(base["train"].argmax(1) == np.array([labels.index(r["label"]) for r in parts["train"]]))
    return {"boosting": f1("test", 0.0), "residual": f1("test", 1.0), "residual_chosen": f1("test", best),
            "scale": best, "val": {a: f1("validation", a) for a in SCALES},
            "best_epoch": result["best_epoch"], "oof_accuracy": float(oof),
            "val_boosting_accuracy": float(np.mean(base["validation"].argmax(1) == y["validation"])),
            "seconds_boosting": round(t_boost, 1), "seconds_neural": round(t_neural, 1)}


def for_each_origin(backtests: list[str], out: Path, origins: str, compute) -> dict:
    """{origin: compute(origin folder)} over the backtests' origins (`origins`: comma-separated, empty: all),
    kept in OUT/results.json after each one; origins already there are not computed again."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    wanted = {o for o in origins.split(",") if o}
    for bt in backtests:
        for origin in sorted(Path(bt).glob("origin_*")):
            key = origin.name.removeprefix("origin_")
            if key in results or (wanted and key not in wanted):
                continue
            print(f"origin {key} ...", file=sys.stderr, flush=True)
            results[key] = compute(origin)
            print(json.dumps({key: results[key]}), file=sys.stderr, flush=True)
            path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("backtests", nargs="+", help="backtest output folders (with origin_*/data and runs/trendnlp)")
    p.add_argument("--out", required=True, help="folder for the trained runs and results.json")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--purge", type=int, default=4, help="cutoffs left out on each side of a held-out block")
    p.add_argument("--fold-by", choices=("time", "product"), default="time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="config override for the neural part (repeatable)")
    p.add_argument("--origins", default="", help="comma-separated origins to run (default: all)")
    a = p.parse_args(argv)
    out = Path(a.out)
    results = for_each_origin(a.backtests, out, a.origins,
                              lambda origin: origin_result(origin, out, a.folds, a.purge, a.seed, a.set, a.fold_by))
    origins = sorted(results)
    print("| row | " + " | ".join(origins) + " | mean |")
    print("|---|" + "---:|" * (len(origins) + 1))
    for row in ("boosting", "residual", "residual_chosen"):
        vals = [results[o][row] for o in origins]
        print(f"| {row} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {np.mean(vals):.4f} |")
    print("| scale chosen | " + " | ".join(str(results[o]["scale"]) for o in origins) + " | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
