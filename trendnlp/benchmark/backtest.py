"""`trendnlp backtest`: the benchmark protocol repeated at rolling origins (docs/backtest.md).

For each origin O (a cutoff date), with the benchmark's gaps relative to O:
    train cutoffs   first … O - 10 periods
    validation      O - 6 … O - 4
    test            O … O + 2
the records are split (split.split_by_cutoff, the same purge) and `run.run_benchmark` (the code of
`trendnlp benchmark`, not a copy) trains and scores the requested rows in DIR/origin_O/. With `update`, each
neural run warm-starts from the same run's model at the previous origin. The records are prepared once.

Output (DIR): backtest.json (per-origin rows, the mean, wins), backtest.md, backtest.png (macro-F1 per origin).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trendnlp.benchmark.args import BRANCHES, DEFAULT_ROWS, PRODUCT_VARIANTS, VARIANTS
from trendnlp.benchmark.inputs import parse_range
from trendnlp.benchmark.rows import FUSED_PREFIX
from trendnlp.benchmark.run import Timer, check_parts, run_benchmark, within
from trendnlp.config import TrendConfig

# rows every other row's wins are counted against (where they ran)
REFERENCES = ("sales_only", "gbm_all+offsets", "gbm_all", "gbm_all_text")
OFFSETS = "+offsets"
# the benchmark's split relative to its test origin, in periods: (first, last) of validation and test, last of train
GAPS = {"train_last": -10, "val": (-6, -4), "test": (0, 2)}
PERIODS_PER_YEAR = {"W": 52, "D": 365, "M": 12}  # without --origins: every `every` periods over the log's last year


def _shift(date: str, periods: int, freq: str) -> str:
    d = dt.date.fromisoformat(date)
    if freq == "W":
        return (d + dt.timedelta(weeks=periods)).isoformat()
    if freq == "D":
        return (d + dt.timedelta(days=periods)).isoformat()
    import pandas as pd

    return (pd.Period(d, freq="M") + periods).end_time.date().isoformat()


def origin_ranges(origin: str, first_cutoff: str, freq: str = "W") -> dict[str, tuple[str, str]]:
    """The train / val / test cutoff ranges of one origin (the benchmark's gaps relative to O).

    >>> origin_ranges("2011-10-23", "2010-05-30")
    {'train': ('2010-05-30', '2011-08-14'), 'val': ('2011-09-11', '2011-09-25'), 'test': ('2011-10-23', '2011-11-06')}
    """
    return {"train": (first_cutoff, _shift(origin, GAPS["train_last"], freq)),
            "val": tuple(_shift(origin, k, freq) for k in GAPS["val"]),
            "test": tuple(_shift(origin, k, freq) for k in GAPS["test"])}


def choose_origins(cutoffs: Sequence[str], spec: str | None, every: int, freq: str = "W",
                   horizon: int = 4) -> list[str]:
    """The origins: `FIRST:LAST` every `every` periods from FIRST, or by default every `every`
    periods over the last year of the log: from the latest origin whose test window the records cover, back
    while the origin is inside the log's last year (which ends `horizon` periods after the last cutoff) and
    still has training cutoffs before it.

    Args:
        cutoffs: every record cutoff (ISO dates).
        spec: "FIRST:LAST" (inclusive ISO dates, FIRST <= LAST; or the parsed pair) or None.
        every: periods between origins.
        freq: period length.
        horizon: future periods per record (the log's last period is the last cutoff + horizon).
    Returns:
        origins, oldest first; each has training cutoffs before it and its test window inside the records.
    Raises:
        ValueError when an origin has no training cutoffs or its test window runs past the last cutoff.

    >>> cuts = [(dt.date(2010, 5, 30) + dt.timedelta(weeks=i)).isoformat() for i in range(76)]
    >>> choose_origins(cuts, None, 8)  # the log ends 2011-12-04: its last year starts after 2010-12-05
    ['2011-01-16', '2011-03-13', '2011-05-08', '2011-07-03', '2011-08-28', '2011-10-23']
    >>> choose_origins(cuts, "2011-08-28:2011-10-23", 8)
    ['2011-08-28', '2011-10-23']
    """
    if every < 1:
        raise ValueError(f"--every: expected a positive number of periods, found {every}")
    first, last = min(cutoffs), max(cutoffs)
    latest = _shift(last, -GAPS["test"][1], freq)
    if spec:
        lo, hi = parse_range(spec, "--origins")
        origins, o = [], lo
        while o <= hi:
            origins.append(o)
            o = _shift(o, every, freq)
    else:
        year_start = _shift(_shift(last, horizon, freq), -PERIODS_PER_YEAR[freq], freq)
        origins, o = [], latest
        while not origins or (o > year_start and _shift(o, GAPS["train_last"], freq) >= first):
            origins.insert(0, o)
            o = _shift(o, -every, freq)
    for o in origins:
        if o > latest:
            raise ValueError(f"origin {o}: its test window ends {_shift(o, GAPS['test'][1], freq)}, after the last "
                             f"cutoff with a known future ({last}); the latest possible origin is {latest}")
        if _shift(o, GAPS["train_last"], freq) < first:
            raise ValueError(f"origin {o}: no training cutoffs before {_shift(o, GAPS['train_last'], freq)} (the "
                             f"first cutoff is {first}); choose an origin from {_shift(first, -GAPS['train_last'], freq)} on")
    return origins


def plan_rows(rows: Sequence[str], fusion_method: str) -> tuple[list[str], list[str]]:
    """Which training runs and baselines the requested table rows need.

    `trendnlp` trains the saved model as `trendnlp train` does, and its branches' rows (`trendnlp:neural`,
    `trendnlp:boosting`) come from the same run; `fused` trains the config's fusion method alone;
    `name+offsets` needs the baseline `name`.

    >>> plan_rows(["trendnlp", "trendnlp:boosting", "fused", "sales_only", "gbm_all+offsets"], "gated")
    (['trendnlp', 'fused_gated', 'sales_only'], ['gbm_all'])
    """
    from trendnlp.benchmark.baselines import BASELINES

    variants, baselines = [], []
    for row in rows:
        base = row[: -len(OFFSETS)] if row.endswith(OFFSETS) else row
        product, _, branch = row.partition(":")
        if product in PRODUCT_VARIANTS and branch in ("", *BRANCHES):
            name, into = product, variants
        elif row == "fused":
            name, into = FUSED_PREFIX + fusion_method, variants
        elif row in VARIANTS:
            name, into = row, variants
        elif base in BASELINES:
            name, into = base, baselines
        else:
            raise ValueError(f"--rows: unknown row {row!r}; known: {', '.join(PRODUCT_VARIANTS)} (and NAME:"
                             f"{' / NAME:'.join(BRANCHES)} for a branch alone), fused, {', '.join(VARIANTS)}, the "
                             f"baselines {', '.join(BASELINES)} (with +offsets for the probabilistic ones)")
        if name not in into:
            into.append(name)
    return variants, baselines


def summarize(per_origin: dict[str, dict[str, dict]], rows: Sequence[str]) -> dict[str, dict]:
    """Mean test macro-F1 (and new-product slice) over origins, and wins against each reference row.

    Args:
        per_origin: {origin: {row name: table row}}.
        rows: the requested rows, in table order.
    Returns:
        {row: {"mean": ..., "slice_mean": ... or None, "wins_vs_<ref>": count of origins where the row's test
        macro-F1 is higher than the reference's, "origins": n}}.

    >>> per = {"o1": {"a": {"macro_f1": 0.5}, "sales_only": {"macro_f1": 0.4}},
    ...        "o2": {"a": {"macro_f1": 0.3}, "sales_only": {"macro_f1": 0.4}}}
    >>> summarize(per, ["a", "sales_only"])["a"]["wins_vs_sales_only"]
    1
    """
    out = {}
    for name in rows:
        got = [o[name] for o in per_origin.values() if name in o]
        if not got:
            continue
        entry = {"mean": float(np.mean([r["macro_f1"] for r in got])), "origins": len(got),
                 "slice_mean": _mean_or_none([r.get("slice_macro_f1") for r in got]),
                 "val_mean": _mean_or_none([r.get("val_macro_f1") for r in got])}
        for ref in REFERENCES:
            if ref != name and all(ref in o for o in per_origin.values()):
                entry[f"wins_vs_{ref}"] = sum(o[name]["macro_f1"] > o[ref]["macro_f1"]
                                              for o in per_origin.values() if name in o)
        out[name] = entry
    return out


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    return float(np.mean(values)) if values and all(v is not None for v in values) else None


def run_backtest(records: Sequence[dict], base_config: dict, out_dir: str | Path, origins: Sequence[str],
                 seeds: Sequence[int], rows: Sequence[str] = DEFAULT_ROWS, update: bool = False, freq: str = "W",
                 horizon: int = 4, progress: bool = True, meta: dict | None = None) -> dict:
    """Run the benchmark's per-window code at each origin and summarise the requested rows.

    Args:
        records: labelled records of the whole log (prepared once).
        base_config: the benchmark config dict (YAML + overrides).
        out_dir: output folder; each origin's full benchmark output goes to out_dir/origin_<O>/.
        origins: origin dates (choose_origins).
        seeds: training seeds of the neural rows (their mean is the row's score at an origin).
        rows: table rows to report (plan_rows says what they need).
        update: warm-start each neural run from the same run's exported model at the previous origin.
        freq, horizon: period length and the purge between split parts.
        progress: progress bars.
        meta: extra facts for backtest.json.
    Returns:
        the backtest.json dict: {"origins", "rows", "per_origin": {O: {row: table row}}, "summary", "timings"}.
    """
    from trendnlp.data.record_files.split import split_by_cutoff

    out = Path(out_dir)
    rows = list(rows)
    variants, baselines = plan_rows(rows, TrendConfig.from_dict(base_config).fusion.method)
    first = min(r["cutoff"] for r in records)
    timer, per_origin, splits, warm, parts = Timer(), {}, {}, None, {}
    for o in origins:  # every origin's split is checked before anything is written
        ranges = origin_ranges(o, first, freq)
        parts[o] = dict(zip(("train", "validation", "test"), split_by_cutoff(
            records, ranges["train"], ranges["val"], ranges["test"], horizon=horizon, freq=freq)))
        check_parts(parts[o], where=f"origin {o}: ", records=records)
    out.mkdir(parents=True, exist_ok=True)
    for o in origins:
        ranges = origin_ranges(o, first, freq)
        train, val, test = parts.pop(o).values()
        splits[o] = {k: list(v) for k, v in ranges.items()} | {"records": [len(train), len(val), len(test)]}
        print(f"[backtest] origin {o}: train {len(train):,} ({ranges['train'][0]} … {ranges['train'][1]}), "
              f"validation {len(val):,}, test {len(test):,} records")
        with timer.stage(f"origin {o}"):
            res = run_benchmark({"train": train, "validation": val, "test": test}, base_config,
                                out / f"origin_{o}", seeds, variants=variants, baselines=baselines, forecasters=[],
                                progress=progress, n_examples=0, warm_start=warm,
                                meta={"origin": o, "split": {k: list(v) for k, v in ranges.items()}},
                                records=within(records, ranges["train"][0], ranges["test"][1]))
        by_name = {r["name"]: r for r in res["rows"]}
        per_origin[o] = {name: _compact(by_name[name]) for name in rows if name in by_name}
        if update:
            warm = {f"{r['name']}/seed_{run['seed']}": run["model_dir"] for r in res["rows"]
                    if r["name"] in variants for run in r.get("runs", [])}
        line = ", ".join(f"{n} {r['macro_f1']:.4f}" for n, r in per_origin[o].items())
        print(f"[backtest] origin {o}: test macro-F1 {line}")
    result = {"origins": list(origins), "rows": rows, "seeds": list(seeds), "update": update, "splits": splits,
              "per_origin": per_origin, "summary": summarize(per_origin, rows),
              "timings": {**timer.stages, "total": timer.total}, **(meta or {})}
    (out / "backtest.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "backtest.md").write_text(backtest_markdown(result) + "\n", encoding="utf-8")
    plot_backtest(result, out / "backtest.png")
    return result


def _compact(row: dict) -> dict:
    """The fields of a benchmark row the backtest keeps (no per-run details, no confusion matrices)."""
    keep = ("macro_f1", "accuracy", "macro_f1_std", "macro_f1_min", "val_macro_f1", "slice_macro_f1", "f1_per_class",
            "seeds", "seconds", "variant")
    out = {k: row[k] for k in keep if row.get(k) is not None}
    weights = [run["blend_weight"] for run in row.get("runs", []) if run.get("blend_weight") is not None]
    if weights:  # the hybrid's weight of its neural branch, chosen on this origin's validation weeks
        out["blend_weights"] = weights
    return out


def backtest_markdown(result: dict) -> str:
    """Per-origin test macro-F1 table (rows as columns), then the mean, the new-product mean and the wins.

    >>> res = {"rows": ["a"], "per_origin": {"2011-10-23": {"a": {"macro_f1": 0.5}}},
    ...        "summary": {"a": {"mean": 0.5, "slice_mean": None, "origins": 1}}}
    >>> backtest_markdown(res).splitlines()[2]
    '| 2011-10-23 | 0.5000 |'
    """
    rows = [r for r in result["rows"] if r in result["summary"]]
    num = lambda x: "" if x is None else f"{x:.4f}"  # noqa: E731
    out = ["| origin | " + " | ".join(rows) + " |", "|---|" + "---:|" * len(rows)]
    for o, per in result["per_origin"].items():
        out.append(f"| {o} | " + " | ".join(num(per.get(r, {}).get("macro_f1")) for r in rows) + " |")
    s = result["summary"]
    out.append("| **mean** | " + " | ".join(f"**{num(s[r]['mean'])}**" for r in rows) + " |")
    out.append("| new-product mean | " + " | ".join(num(s[r].get("slice_mean")) for r in rows) + " |")
    for ref in REFERENCES:
        if any(f"wins_vs_{ref}" in s[r] for r in rows):
            out.append(f"| wins vs {ref} | " + " | ".join(
                f"{s[r][f'wins_vs_{ref}']}/{s[r]['origins']}" if f"wins_vs_{ref}" in s[r] else "" for r in rows) + " |")
    return "\n".join(out)


def plot_backtest(result: dict, path: str | Path) -> Path:
    """Test macro-F1 per origin, one line per row (the file `backtest.png`)."""
    from matplotlib.figure import Figure

    from trendnlp.evaluation.plots import _save

    origins = list(result["per_origin"])
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    for name in result["rows"]:
        ys = [result["per_origin"][o].get(name, {}).get("macro_f1", np.nan) for o in origins]
        ax.plot(range(len(origins)), ys, marker="o", ms=4, lw=2.2 if name == "fused" else 1.2,
                label=f"{name} (mean {np.nanmean(ys):.3f})")
    ax.set_xticks(range(len(origins)), origins, rotation=20, fontsize=8)
    ax.set_ylabel("test macro-F1")
    ax.set_title("Rolling-origin backtest: test macro-F1 per origin", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def run_backtest_cli(args: argparse.Namespace) -> int:
    """`trendnlp backtest`: prepare once, choose the origins, run every origin, print the summary table."""
    from trendnlp.benchmark.inputs import machine_description, parse_seeds, run_records, start_run
    from trendnlp.options import parse_names

    base, config = start_run(args)
    rows = list(args.rows) if isinstance(args.rows, list) else parse_names(args.rows, "--rows")
    plan_rows(rows, config.fusion.method)  # an unknown row is refused before the log is read
    records = run_records(args, config, progress=not args.no_progress)
    origins = choose_origins([r["cutoff"] for r in records], args.origins, args.every, args.freq,
                             horizon=args.horizon)
    print(f"[backtest] origins: {', '.join(origins)}; rows: {', '.join(rows)}")
    meta = {"options": {k: v for k, v in vars(args).items() if k != "func"}, "machine": machine_description()}
    result = run_backtest(records, base, args.out, origins, parse_seeds(args.seeds), rows, update=args.update,
                          freq=args.freq, horizon=args.horizon, progress=not args.no_progress, meta=meta)
    print()
    print(backtest_markdown(result))
    print("\ntime per origin (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result["timings"].items()))
    print(f"results in {args.out}: backtest.json, backtest.md, backtest.png, origin_*/")
    return 0
