"""Does the text branch find a signal where the text carries one? A synthetic check (prints a table).

On Online Retail the text is a short product name and adds about nothing (docs/benchmark.md). That says
something about that shop's text, not about the branch: here the text decides the trend and the sales do not.

The records: products with flat weekly sales (Poisson around a level of their own, no trend in the history).
A third of them carry the word "viral" in their title and their sales then jump (rising); a third carry
"clearance" and their sales then drop (falling); the rest carry neither, and their future is drawn at random
(rising, falling or stable with equal odds), so for them nothing predicts the label. The label comes from the
label rule on the generated history and future, as always. Train, validation and test are disjoint sets of
products, so the test products' titles were never seen: the model must have learnt the words, not the products.

Two models are trained with one config (default: the shipped one, kind hybrid) and the same seed, the second
with `text.enabled=false`; the table gives test macro-F1 of the saved model and of each branch, on every test
product, on the products whose title carries the signal and on the others. Expected: with text, the signal
products are labelled almost perfectly; without text, no model can beat chance on them; the others stay at
chance for both.

    python scripts/text_signal_check.py [--config configs/default.yaml] [--products 300] [--out runs/text_signal]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIGNAL = {"viral": "rising", "clearance": "falling"}  # the title word -> the trend it decides
FACTORS = {"rising": 2.5, "falling": 0.3, "stable": 1.0}
_ADJECTIVES = ["rustic", "striped", "scandi", "vintage", "modern", "floral", "woven", "glazed", "painted", "tall"]
_COLOURS = ["sage", "teal", "ivory", "coral", "navy", "mustard", "blush", "charcoal", "olive", "plum"]
_NOUNS = ["teacup", "notebook", "candle", "lamp", "cushion", "frame", "clock", "teapot", "scarf", "vase"]


def make_records(n_products: int = 300, cutoffs: int = 4, history: int = 26, seed: int = 0) -> list[dict]:
    """Synthetic records in which the title's word, not the sales, decides the trend (module docstring)."""
    from trendnlp.labels import LabelRule

    rng, rule = np.random.default_rng(seed), LabelRule()
    records = []
    for p in range(n_products):
        signal = ("viral", "clearance", "none")[p % 3]
        name = [str(rng.choice(_ADJECTIVES)), str(rng.choice(_COLOURS)), str(rng.choice(_NOUNS))]
        if signal != "none":
            name.insert(int(rng.integers(0, 3)), signal)
        level = float(rng.uniform(5, 60))
        for k in range(cutoffs):
            trend = SIGNAL[signal] if signal != "none" else str(rng.choice(list(FACTORS)))
            sales = rng.poisson(level, history).astype(float)
            future = rng.poisson(level * FACTORS[trend], 4).astype(float)
            records.append({
                "product_id": f"s{p:04d}", "cutoff": (dt.date(2024, 3, 3) + dt.timedelta(weeks=k)).isoformat(),
                "freq": "W", "title": " ".join(name).title(), "description": "", "reviews": [],
                "sales": sales.tolist(), "future_sales": future.tolist(), "label": rule.label(sales, future),
            })
    return records


def signal_of(record: dict) -> str:
    """The signal word in a record's title, or "none"."""
    words = record["title"].lower().split()
    return next((w for w in SIGNAL if w in words), "none")


def split_by_product(records: list[dict]) -> dict[str, list[dict]]:
    """60% / 20% / 20% of the products (by index) to train / validation / test."""
    parts: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for r in records:
        p = int(r["product_id"][1:]) % 10
        parts["train" if p < 6 else "validation" if p < 8 else "test"].append(r)
    return parts


def macro_f1(truth: list[str], predicted: list[str]) -> float:
    """Macro-F1 over the labels that occur in either list (a group of titled products is nearly all rising or
    all falling: a label nobody has nor predicts would count as 0 and cap the score at 2/3)."""
    from sklearn.metrics import f1_score

    labels = sorted(set(truth) | set(predicted))
    return float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0))


def run(config_path: str | Path, out: Path, n_products: int = 300, seed: int = 0, overrides: list[str] = (),
        progress: bool = False) -> list[dict]:
    """Train with and without text on the synthetic records; one row per (model, part) with macro-F1 by group."""
    import yaml

    from trendnlp.config import TrendConfig, apply_overrides
    from trendnlp.data.record_files.io import write_records
    from trendnlp.model.load import load_model
    from trendnlp.training import train

    parts = split_by_product(make_records(n_products, seed=seed))
    for name, recs in parts.items():
        write_records(recs, out / "data" / f"{name}.jsonl")
    test = parts["test"]
    truth = [r["label"] for r in test]
    rows = []
    for text in (True, False):
        raw = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
        apply_overrides(raw, [*overrides, f"text.enabled={str(text).lower()}", f"train.seed={seed}"])
        raw.setdefault("data", {}).update({k: str(out / "data" / f"{k}.jsonl") for k in parts})
        raw["data"]["test"] = ""
        config = TrendConfig.from_dict(raw)
        run_dir = out / ("fused" if text else "sales_only")
        result = train(config, run_dir, progress=progress)
        model = load_model(run_dir / "model")
        branches = [None, "neural", "boosting"] if config.model.kind == "hybrid" else [None]
        for branch in branches:
            predicted = model.predict(test, branch=branch)
            row = {"text": text, "model": branch or f"saved ({config.model.kind})",
                   "blend_weight": result.get("blend_weight") if branch is None else None}
            for group, keep in (("all", lambda r: True), ("signal", lambda r: signal_of(r) != "none"),
                                ("no signal", lambda r: signal_of(r) == "none")):
                idx = [i for i, r in enumerate(test) if keep(r)]
                row[group] = macro_f1([truth[i] for i in idx], [predicted[i] for i in idx])
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| text | model | blend weight | test macro-F1, all | title with signal | title without |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        w = "" if r["blend_weight"] is None else f"{r['blend_weight']:.1f}"
        lines.append(f"| {'on' if r['text'] else 'off'} | {r['model']} | {w} | {r['all']:.3f} | {r['signal']:.3f} "
                     f"| {r['no signal']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(REPO / "configs" / "default.yaml"))
    p.add_argument("--products", type=int, default=300, help="synthetic products (4 weekly cutoffs each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override")
    p.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(a.config, Path(a.out or tmp), a.products, a.seed, a.set, progress=not a.no_progress)
    print(table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
