"""`trendnlp benchmark`: the Online Retail benchmark (docs/benchmark.md) from one command.

    order log --prepare--> records --split by cutoff--> train / validation / test
        --> baselines (baselines.run_baselines)                              one row each
        --> `trendnlp`: the saved model as `trendnlp train --sales` builds it (training.pipeline, which splits
            the same records the same way), with its branches alone as `trendnlp:neural` / `trendnlp:boosting`
        --> ablations: sales-only, text-only, fused x {concat, gated, cross_attention}, each over the seeds
        --> `fused`: the fusion method with the best mean validation macro-F1 (test is never used to choose)
        --> DIR/results.json, DIR/results.md, plots, DIR/report.html (report.py)

Every stage is timed and printed. The output folder:
    data/{train,validation,test}.parquet   the split records (validation/test sorted by product: texts dedupe)
    runs/{variant}/seed_{s}/               each training run (training.train's folder, checkpoints removed;
                                           for `trendnlp` the pipeline's folder with data/ and metrics.json)
    baselines/{name}_probs_{part}.npy      validation / test probabilities of each probabilistic baseline (file order)
    results.json, results.md, report.html, *.png, products/*.png
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trendnlp.config import TrendConfig, apply_overrides
from trendnlp.labels import LABELS
from trendnlp.benchmark.args import BRANCHES, DEFAULT_SEEDS, PRODUCT_VARIANTS, VARIANTS
from trendnlp.benchmark.inputs import (machine_description, names_option, parse_range, parse_seeds, run_records,
                                       start_run)
from trendnlp.data.record_files.split import by_product, write_splits
from trendnlp.benchmark.rows import (NEW_PRODUCT_AGE, aggregate, new_product_mask, run_row, select_fused,
                                     slice_row)
from trendnlp.evaluation.metrics import classification_metrics




# ---- stages and timing ---------------------------------------------------------------------------
@dataclass
class Timer:
    """Wall-clock seconds per named stage, printed as each stage ends."""

    stages: dict[str, float] = field(default_factory=dict)
    echo: Callable[[str], None] = print

    @contextmanager
    def stage(self, name: str):
        self.echo(f"[benchmark] {name} ...")
        t0 = time.perf_counter()
        yield
        self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t0, 1)
        self.echo(f"[benchmark] {name}: {time.perf_counter() - t0:.1f} s")

    @property
    def total(self) -> float:
        return round(sum(self.stages.values()), 1)


# ---- data ----------------------------------------------------------------------------------------
# ---- neural rows ---------------------------------------------------------------------------------
def variant_config(base: dict, variant: str, seed: int, data: dict[str, str]) -> TrendConfig:
    """The base config dict with a variant's switch, the seed and the data files applied."""
    raw = json.loads(json.dumps(base))  # deep copy
    apply_overrides(raw, {**VARIANTS, **PRODUCT_VARIANTS}[variant] + [f"train.seed={seed}"])
    raw.setdefault("data", {}).update(train=data["train"], validation=data["validation"], test=data["test"])
    return TrendConfig.from_dict(raw, source=f"benchmark variant {variant}")


def train_variant(config: TrendConfig, out_dir: Path, progress: bool = True, keep_checkpoints: bool = False,
                  parts: dict[str, list[dict]] | None = None, slice_mask: np.ndarray | None = None,
                  init_from: str | Path | None = None) -> dict:
    """Train one run (training.train) and return its test metrics, best validation macro-F1 and curve.

    With `parts`, the exported model also predicts validation and test (saved as probs_{part}.npy in the run
    folder), and `slice_mask` gives the new-product macro-F1.
    `init_from` warm-starts from an exported model folder (the backtest's --update).
    """
    from trendnlp.training import train

    t0 = time.perf_counter()
    result = train(config, out_dir, progress=progress, init_from=init_from)
    if not keep_checkpoints:  # resumable state holds the whole encoder and the optimizer: ~100 MB a run
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    extra = {}
    if parts is not None:
        from trendnlp.model.classifier import TrendClassifier

        clf = TrendClassifier.from_pretrained(result["model_dir"])
        probs = {k: clf.predict_proba(parts[k], batch_size=config.train.eval_batch_size)
                 for k in ("validation", "test")}
        for k, v in probs.items():
            np.save(out_dir / f"probs_{k}.npy", v)
        extra.update(slice_row(parts["test"], probs["test"].argmax(1), slice_mask))
        if clf.fusion.change_head is not None:  # the regression head against persistence (change = 0)
            rule = config.labels.rule()
            true = np.array([rule.change(r["sales"], r["future_sales"]) for r in parts["test"]])
            pred = clf.predict_change(parts["test"], batch_size=config.train.eval_batch_size)
            extra.update(change_mae=float(np.abs(pred - true).mean()),
                         persistence_change_mae=float(np.abs(true).mean()))
    return {**extra, **run_row(result, result["test"], result["validation"]["macro_f1"], config.train.seed,
                                time.perf_counter() - t0), "init_from": str(init_from) if init_from else None}


def train_product(name: str, config: TrendConfig, records: Sequence[dict], out_dir: Path, test: Sequence[dict],
                  progress: bool = True, slice_mask: np.ndarray | None = None,
                  init_from: str | Path | None = None) -> dict[str, dict]:
    """The `trendnlp` row's run: `training.pipeline.train_on_records` on every record up to the end of test,
    split by the pipeline itself, then the saved model (and each branch alone) scored on the benchmark's test.

    Returns:
        {row name: run entry}: `name` (the product variant) and, for a hybrid, `name:branch` per branch.
    """
    from trendnlp.model.load import load_model
    from trendnlp.training.pipeline import train_on_records

    t0 = time.perf_counter()
    result = train_on_records(records, config, out_dir, progress=progress, init_from=init_from)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    if result["split"]["records"]["test"] != len(test):
        raise ValueError(f"the pipeline's split holds {result['split']['records']['test']} test records where the "
                         f"benchmark's holds {len(test)}; its ranges: {result['split']['ranges']}")
    clf = load_model(result["model_dir"])
    labels = clf.labels
    y = [r["label"] for r in test]
    runs = {}
    branches = result.get("branches") or {}
    for branch in (None, *(b for b in BRANCHES if branches.get(b))):  # None: the saved model
        t1 = time.perf_counter()
        probs = clf.predict_proba(test, batch_size=config.train.eval_batch_size, branch=branch)
        np.save(out_dir / f"probs_test{'' if branch is None else '_' + branch}.npy", probs)
        pred = probs.argmax(1)
        metrics = classification_metrics(y, [labels[i] for i in pred], labels)
        if branch is None:
            val, seconds = result["validation"]["macro_f1"], time.perf_counter() - t0
        else:
            val, seconds = branches[branch]["validation"]["macro_f1"], time.perf_counter() - t1
        row = {**run_row(result, {**metrics, "calibration": (result["test"] or {}).get("calibration")
                                   if branch is None else None}, val, config.train.seed, seconds),
               **slice_row(test, pred, slice_mask), "init_from": str(init_from) if init_from else None}
        if branch is None and result.get("blend_weight") is not None:
            row["blend_weight"] = result["blend_weight"]
        runs[name if branch is None else f"{name}:{branch}"] = row
    return runs


# ---- the benchmark -------------------------------------------------------------------------------
SPLIT_OPTIONS = {"train": "--train-cutoffs", "validation": "--val-cutoffs", "test": "--test-cutoffs"}


def check_parts(parts: dict[str, list[dict]], where: str = "", records: Sequence[dict] | None = None) -> None:
    """Every split part must hold records: an empty one is an error naming its option and the cutoffs of
    `records` (the records that were split; default: those of the parts).

    >>> check_parts({"train": [{"cutoff": "2011-01-02"}], "validation": [], "test": []})
    Traceback (most recent call last):
    ValueError: the validation part is empty: no record has a cutoff in the --val-cutoffs range; the records' \
cutoffs run from 2011-01-02 to 2011-01-02
    """
    records = [r for recs in parts.values() for r in recs] if records is None else records
    cutoffs = [r["cutoff"] for r in records if r.get("cutoff")]
    for name, option in SPLIT_OPTIONS.items():
        if not parts.get(name):
            span = f"; the records' cutoffs run from {min(cutoffs)} to {max(cutoffs)}" if cutoffs else ""
            raise ValueError(f"{where}the {name} part is empty: no record has a cutoff in the {option} range{span}")


def _forecaster_rows(parts, rule, names, slice_mask, timer: Timer, notes: list[str]) -> list[dict]:
    """Rows of the statsforecast models (forecasters.py), or none with a note when statsforecast is missing."""
    from trendnlp.benchmark.baselines import table_row
    from trendnlp.benchmark.forecasters import FORECASTERS, INSTALL_HINT, run_forecasters, statsforecast_available

    if not statsforecast_available():
        notes.append(f"forecaster rows skipped: statsforecast is not installed ({INSTALL_HINT})")
        print(f"[benchmark] {notes[-1]}")
        return []
    rows = []
    with timer.stage("forecasters"):
        for f in run_forecasters(parts["validation"], parts["test"], rule, names or FORECASTERS):
            pred = [LABELS[i] for i in f["predictions"]]
            rows.append({**table_row(f["name"], [r["label"] for r in parts["test"]], pred, slice_mask),
                         "kind": "forecaster", "val_macro_f1": f["val_macro_f1"], "params": f["params"],
                         "seconds": f["seconds"], "seeds": []})
            print(f"[benchmark] {f['name']}: {f['seconds']:.1f} s, validation macro-F1 {f['val_macro_f1']:.4f}")
    return rows


def run_benchmark(parts: dict[str, list[dict]], base_config: dict, out_dir: str | Path, seeds: Sequence[int],
                  variants: Sequence[str] | None = None, baselines: Sequence[str] | None = None,
                  forecasters: Sequence[str] | None = None, timer: Timer | None = None, progress: bool = True,
                  n_examples: int = 6, meta: dict | None = None,
                  warm_start: dict[str, str] | None = None, records: Sequence[dict] | None = None) -> dict:
    """Baselines and every neural variant over the seeds on prepared, split records; writes the report.

    Args:
        parts: {"train", "validation", "test"} lists of labelled normalised records.
        base_config: the benchmark TrendConfig as a dict (YAML + overrides); variants flip one switch each.
        out_dir: output folder (layout in the module docstring).
        seeds: training seeds; the neural rows report mean, std and min over them.
        variants: names of VARIANTS and PRODUCT_VARIANTS (all by default); an empty list trains none.
        baselines: subset of baselines.BASELINES (all by default); an empty list runs none.
        forecasters: subset of forecasters.FORECASTERS (all by default); an empty list runs none. Skipped with
            a note when statsforecast is not installed.
        timer: collects the stage times (a new one when None).
        progress: progress bars and per-epoch lines.
        n_examples: test products drawn in the product-history plots.
        meta: extra facts stored in results.json (command, data, split, machine).
        warm_start: {"variant/seed_s": exported model folder} to warm-start those runs from (backtest --update).
        records: every labelled record from the first training cutoff to the last test cutoff, purged gaps
            included, for the `trendnlp` rows (the pipeline splits them itself); default: the parts joined.
    Returns:
        the results dict written to results.json: {"rows": [...], "timings": {...}, ...}.

    >>> run_benchmark(parts, TrendConfig().to_dict(), "runs/bench", seeds=[0])["rows"][0]["name"]  # doctest: +SKIP
    'majority'
    """
    from trendnlp.benchmark.baselines import BASELINES, run_baselines
    from trendnlp.benchmark.forecasters import FORECASTERS
    from trendnlp.benchmark.report import write_report

    out, timer = Path(out_dir), timer or Timer()
    variants = list([*PRODUCT_VARIANTS, *VARIANTS] if variants is None else variants)
    for what, names, known in (("variant", variants, [*PRODUCT_VARIANTS, *VARIANTS]),
                               ("baseline", baselines, BASELINES), ("forecaster", forecasters, FORECASTERS)):
        unknown = sorted(set(names or ()) - set(known))
        if unknown:
            raise ValueError(f"unknown {what}(s) {unknown}; known: {list(known)}")
    check_parts(parts)
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs are accepted
    with timer.stage("write split records"):
        data = write_splits(parts, out / "data")
    # validation / test in the files' order, so every saved probability array lines up with its file
    parts = {k: (v if k == "train" else by_product(v)) for k, v in parts.items()}
    base = TrendConfig.from_dict(base_config)
    rule = base.labels.rule()
    # the channels the config names in sales.channels (orders, customers, ...) go to the sales baselines too
    channels = list(base.sales.channels)
    rows: list[dict] = []
    notes: list[str] = []
    slice_mask = new_product_mask(parts["test"])
    if slice_mask is None:
        notes.append("no new-product slice: the test records carry no `first_sale` (prepare them from the order log)")
    baseline_probs: dict = {}
    if baselines is None or len(baselines):
        with timer.stage("baselines"):
            for row in run_baselines(parts["train"], parts["validation"], parts["test"], rule, seed=seeds[0],
                                     progress=progress, names=baselines, slice_mask=slice_mask,
                                     probs_out=baseline_probs, channels=channels,
                                     base_model=base_config["text"]["base_model"]):
                rows.append({**row, "kind": "baseline", "seeds": [seeds[0]]})
        for name, probs in baseline_probs.items():  # for later blends with a neural run (saved for blends done outside the benchmark)
            (out / "baselines").mkdir(exist_ok=True)
            for part, p in zip(("validation", "test"), probs):
                np.save(out / "baselines" / f"{name}_probs_{part}.npy", p)
    if forecasters is None or len(forecasters):
        rows += _forecaster_rows(parts, rule, forecasters, slice_mask, timer, notes)
    for variant in (v for v in variants if v in PRODUCT_VARIANTS):
        runs: dict[str, list[dict]] = {}
        for seed in seeds:
            config = variant_config(base_config, variant, seed, data)
            with timer.stage(f"{variant} seed {seed}"):
                got = train_product(variant, config,
                                    records or [*parts["train"], *parts["validation"], *parts["test"]],
                                    out / "runs" / variant / f"seed_{seed}", parts["test"], progress=progress,
                                    slice_mask=slice_mask,
                                    init_from=(warm_start or {}).get(f"{variant}/seed_{seed}"))
            for name, run in got.items():
                runs.setdefault(name, []).append(run)
                print(f"[benchmark] {name} seed {seed}: validation macro-F1 {run['val_macro_f1']:.4f}, test macro-F1 "
                      f"{run['macro_f1']:.4f}" + (f", blend weight of the neural branch {run['blend_weight']:.2f}"
                                                  if run.get("blend_weight") is not None else ""))
        rows += [{**aggregate(name, rs), "kind": "product" if ":" not in name else "branch"}
                 for name, rs in runs.items()]
    for variant in (v for v in variants if v in VARIANTS):
        runs = []
        for seed in seeds:
            config = variant_config(base_config, variant, seed, data)
            with timer.stage(f"{variant} seed {seed}"):
                runs.append(train_variant(config, out / "runs" / variant / f"seed_{seed}", progress=progress,
                                          parts=parts, slice_mask=slice_mask,
                                          init_from=(warm_start or {}).get(f"{variant}/seed_{seed}")))
            r = runs[-1]
            print(f"[benchmark] {variant} seed {seed}: validation macro-F1 {r['val_macro_f1']:.4f} "
                  f"(epoch {r['best_epoch']}), test macro-F1 {r['macro_f1']:.4f}")
        rows.append(aggregate(variant, runs))
    fused = select_fused(rows)
    if fused is not None:
        rows.append(fused)
    results = {"rows": rows, "seeds": list(seeds), "config": base_config, "notes": notes,
               "records": {k: len(v) for k, v in parts.items()}, **(meta or {})}
    if slice_mask is not None:
        results["slice"] = (f"{int(slice_mask.sum()):,} test records whose product first sold at most "
                            f"{NEW_PRODUCT_AGE} periods before the cutoff")
    with timer.stage("report"):
        write_report(results, parts, out, n_examples=n_examples, timings=timer.stages)
    results["timings"] = {**timer.stages, "total": timer.total}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def within(records: Sequence[dict], first: str, last: str) -> list[dict]:
    """The records whose cutoff lies in [first, last] (ISO dates): what the `trendnlp` row may split and train on.

    >>> [r["cutoff"] for r in within([{"cutoff": "2011-01-02"}, {"cutoff": "2011-02-06"}], "2011-01-01", "2011-01-31")]
    ['2011-01-02']
    """
    return [r for r in records if first <= str(r["cutoff"])[:10] <= last]


# ---- command line --------------------------------------------------------------------------------
def default_variants(option: str | None, config: TrendConfig) -> list[str] | None:
    """--variants: the names given, or by default the rows the comparison needs (the saved `trendnlp` model,
    whose neural branch is the config's fused model, and sales_only for the text's effect); `all` adds the
    ablations (text_only, each fusion method as its own run, and the refit product).

    >>> default_variants(None, TrendConfig()), default_variants("all", TrendConfig())
    (['trendnlp', 'sales_only'], None)
    """
    if option is None:
        return ["trendnlp", "sales_only"]
    return names_option(option)


def run_benchmark_cli(args: argparse.Namespace) -> int:
    """`trendnlp benchmark`: prepare, split, run everything, write the report, print the table and timings."""
    from trendnlp.benchmark.report import format_results_table
    from trendnlp.data.record_files.split import split_by_cutoff

    progress = not args.no_progress
    timer = Timer()
    base, config = start_run(args)
    seeds = parse_seeds(args.seeds or ([0] if args.quick else DEFAULT_SEEDS))
    ranges = {k: parse_range(getattr(args, f"{k}_cutoffs"), f"--{k}-cutoffs") for k in ("train", "val", "test")}
    variants = default_variants(args.variants, config)
    with timer.stage("prepare"):
        records = run_records(args, config, progress=progress)
    with timer.stage("split"):
        train, val, test = split_by_cutoff(records, ranges["train"], ranges["val"], ranges["test"],
                                           horizon=args.horizon, freq=args.freq)
        print(f"split: train {len(train):,}, validation {len(val):,}, test {len(test):,} records")
        check_parts({"train": train, "validation": val, "test": test}, records=records)
    names = names_option(args.baselines)
    meta = {"options": {k: v for k, v in vars(args).items() if k != "func"},
            "split": {k: list(v) for k, v in ranges.items()}, "machine": machine_description()}
    results = run_benchmark({"train": train, "validation": val, "test": test}, base, args.out, seeds,
                            variants=variants, baselines=names,
                            forecasters=names_option(getattr(args, "forecasters", None)),
                            timer=timer, progress=progress, n_examples=args.examples, meta=meta,
                            records=within(records, ranges["train"][0], ranges["test"][1]))
    print()
    print(format_results_table(results["rows"]))
    print()
    print("time per stage (s): " + ", ".join(f"{k} {v:.1f}" for k, v in results["timings"].items()))
    print(f"results in {args.out}: results.md, results.json, report.html")
    return 0
