"""`trendnlp benchmark`: the Online Retail benchmark (DESIGN §6) from one command.

    order log --prepare--> records --split by cutoff--> train / validation / test
        --> baselines (baselines.run_baselines)                              one row each
        --> our model: sales-only, text-only, fused x {concat, gated, cross_attention}, each over the seeds
        --> `fused`: the fusion method with the best mean validation macro-F1 (test is never used to choose)
        --> DIR/results.json, DIR/results.md, plots, DIR/report.html (report.py)

Every stage is timed and printed. The output folder:
    data/{train,validation,test}.parquet   the split records (validation/test sorted by product: texts dedupe)
    runs/{variant}/seed_{s}/               each training run (training.train's folder, checkpoints removed)
    results.json, results.md, report.html, *.png, products/*.png
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trendnlp.config import TrendConfig, apply_overrides
from trendnlp.labels import LABELS
from trendnlp.benchmark.args import DEFAULT_CONFIG, DEFAULT_SEEDS, VARIANTS, add_arguments  # noqa: F401 (re-exported)
from trendnlp.data.split import ONLINE_RETAIL_SPLIT

FUSED_PREFIX = "fused_"

# --preset online-retail: the file's own column -> the name the preset expects (only for --*-col options given)
_PRESET_COLUMNS = {"product_col": "StockCode", "time_col": "InvoiceDate", "units_col": "Quantity",
                   "price_col": "UnitPrice", "title_col": "Description", "invoice_col": "InvoiceNo",
                   "customer_col": "CustomerID"}
# without a preset: prepare's column arguments and their defaults
_GENERIC_COLUMNS = {"product_col": "product_id", "time_col": "timestamp", "units_col": "units", "price_col": None,
                    "title_col": "title", "description_col": "description"}


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
def parse_range(text: str, what: str) -> tuple[str, str]:
    """`FROM:TO` (ISO dates, inclusive) -> (FROM, TO).

    >>> parse_range("2011-05-29:2011-08-14", "--train-cutoffs")
    ('2011-05-29', '2011-08-14')
    """
    parts = [p.strip() for p in str(text).split(":")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{what}: expected FROM:TO with ISO dates, e.g. 2011-05-29:2011-08-14, found {text!r}")
    return parts[0], parts[1]


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` -> [0, 1, 2].

    >>> parse_seeds("0, 1,2")
    [0, 1, 2]
    """
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds: expected comma-separated integers such as 0,1,2, found {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: expected one or more distinct integers, found {text!r}")
    return seeds


def subsample_products(records: Sequence[dict], max_products: int | None, seed: int = 0) -> list[dict]:
    """Keep the records of at most `max_products` products, drawn at random (seeded) from all products.

    >>> recs = [{"product_id": p, "cutoff": "2011-06-05"} for p in "abcdef"]
    >>> len(subsample_products(recs, 2))
    2
    """
    if not max_products:
        return list(records)
    products = sorted({r["product_id"] for r in records})
    if max_products >= len(products):
        return list(records)
    keep = set(np.random.default_rng(seed).choice(products, size=max_products, replace=False).tolist())
    return [r for r in records if r["product_id"] in keep]


def prepare_records(args: argparse.Namespace, config: TrendConfig, progress: bool = True):
    """Build the records from the order log of `args` (preset or generic columns), or read prepared ones.

    Returns:
        (records, notes): normalised record dicts, and printable lines about what preparing did.
    """
    from trendnlp.data.presets import prepare_preset
    from trendnlp.data.prepare import prepare
    from trendnlp.data.records import read_records

    rule = config.labels.rule()
    if args.records:
        return read_records(args.records, history=config.sales.history, rule=rule), [f"records: {args.records}"]
    opts = {"history": config.sales.history, "horizon": args.horizon, "stride": args.stride,
            "min_history_units": args.min_history_units, "freq": args.freq, "rule": rule}
    if args.preset and args.preset.lower() != "none":
        renames = {getattr(args, k): v for k, v in _PRESET_COLUMNS.items() if getattr(args, k, None)}
        sales = _read_renamed(args.sales, renames) if renames else args.sales
        result = prepare_preset(args.preset, sales, reviews=args.reviews, progress=progress, **opts)
    else:
        cols = {k: getattr(args, k, None) or default for k, default in _GENERIC_COLUMNS.items()}
        texts = args.texts or (args.sales if args.texts is None and _has_text_columns(args.sales, cols) else None)
        result = prepare(args.sales, texts=texts, reviews=args.reviews, progress=progress, **cols, **opts)
    return result.records, result.summary().splitlines()


def _read_renamed(path: str, renames: dict[str, str]):
    """The sales file as a DataFrame with the user's column names mapped to the preset's."""
    import pandas as pd

    from trendnlp.data.records import detect_format

    fmt = detect_format(path)
    df = (pd.read_csv(path, dtype=str) if fmt == "csv" else pd.read_parquet(path) if fmt == "parquet"
          else pd.read_json(path, lines=True, dtype=False))
    missing = sorted(set(renames) - set(df.columns))
    if missing:
        raise ValueError(f"{path}: column(s) {missing} named by --*-col options are not in the file; its columns "
                         f"are {list(df.columns)}")
    df = df.rename(columns=renames)
    df.attrs.update(source=str(path), row_offset=2 if fmt == "csv" else 1)
    return df


def _has_text_columns(path: str, cols: dict) -> bool:
    from trendnlp.data.prepare import _file_columns
    from trendnlp.data.records import detect_format

    names = set(_file_columns(path, detect_format(path)))
    return bool({cols["title_col"], cols["description_col"]} & names)


def write_splits(parts: dict[str, list[dict]], data_dir: Path) -> dict[str, str]:
    """Write each part to data_dir/{name}.parquet; validation and test sorted by (product, cutoff).

    Evaluation batches follow file order, so sorting by product puts each product's cutoffs in one batch
    and its text is encoded once per batch instead of once per record.
    """
    from trendnlp.data.records import write_records

    paths = {}
    for name, recs in parts.items():
        if name != "train":
            recs = sorted(recs, key=lambda r: (r["product_id"], r.get("cutoff") or ""))
        paths[name] = str(data_dir / f"{name}.parquet")
        write_records(recs, paths[name])
    return paths


# ---- neural rows ---------------------------------------------------------------------------------
def variant_config(base: dict, variant: str, seed: int, data: dict[str, str]) -> TrendConfig:
    """The base config dict with a variant's switch, the seed and the data files applied."""
    raw = json.loads(json.dumps(base))  # deep copy
    apply_overrides(raw, VARIANTS[variant] + [f"train.seed={seed}"])
    raw.setdefault("data", {}).update(train=data["train"], validation=data["validation"], test=data["test"])
    return TrendConfig.from_dict(raw, source=f"benchmark variant {variant}")


def train_variant(config: TrendConfig, out_dir: Path, progress: bool = True, keep_checkpoints: bool = False) -> dict:
    """Train one run (training.train) and return its test metrics, best validation macro-F1 and curve."""
    from trendnlp.training import train

    t0 = time.perf_counter()
    result = train(config, out_dir, progress=progress)
    if not keep_checkpoints:  # resumable state holds the whole encoder and the optimizer: ~100 MB a run
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    test = result["test"]
    return {"seed": config.train.seed, "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
            "f1_per_class": test["f1"], "precision_per_class": test["precision"], "recall_per_class": test["recall"],
            "confusion_matrix": test["confusion_matrix"], "val_macro_f1": result["validation"]["macro_f1"],
            "best_epoch": result["best_epoch"], "epochs": result["epochs"],
            "val_curve": [h["validation"]["macro_f1"] for h in result["history"]],
            "model_dir": result["model_dir"], "seconds": round(time.perf_counter() - t0, 1)}


def aggregate(name: str, runs: list[dict]) -> dict:
    """One table row from the runs of one variant: means, and spread (std, min) of macro-F1 over seeds."""
    f1 = np.array([r["macro_f1"] for r in runs])
    acc = np.array([r["accuracy"] for r in runs])
    return {"name": name, "kind": "neural", "accuracy": float(acc.mean()), "macro_f1": float(f1.mean()),
            "f1_per_class": {c: float(np.mean([r["f1_per_class"][c] for r in runs])) for c in LABELS},
            "seeds": [r["seed"] for r in runs], "macro_f1_std": float(f1.std()), "macro_f1_min": float(f1.min()),
            "accuracy_std": float(acc.std()), "val_macro_f1": float(np.mean([r["val_macro_f1"] for r in runs])),
            "confusion_matrix": np.sum([r["confusion_matrix"] for r in runs], axis=0).tolist(),
            "seconds": round(sum(r["seconds"] for r in runs), 1), "runs": runs}


def select_fused(rows: Sequence[dict]) -> dict | None:
    """The fusion row with the best mean validation macro-F1, copied as `fused` (None without fusion rows)."""
    fusion = [r for r in rows if r["name"].startswith(FUSED_PREFIX)]
    if not fusion:
        return None
    best = max(fusion, key=lambda r: r["val_macro_f1"])
    return {**best, "name": "fused", "variant": best["name"],
            "selected_by": "best mean validation macro-F1 among " + ", ".join(r["name"] for r in fusion)}


# ---- the benchmark -------------------------------------------------------------------------------
def run_benchmark(parts: dict[str, list[dict]], base_config: dict, out_dir: str | Path, seeds: Sequence[int],
                  variants: Sequence[str] | None = None, baselines: Sequence[str] | None = None,
                  timer: Timer | None = None, progress: bool = True, n_examples: int = 6,
                  meta: dict | None = None) -> dict:
    """Baselines and every neural variant over the seeds on prepared, split records; writes the report.

    Args:
        parts: {"train", "validation", "test"} lists of labelled normalised records.
        base_config: the benchmark TrendConfig as a dict (YAML + overrides); variants flip one switch each.
        out_dir: output folder (layout in the module docstring).
        seeds: training seeds; the neural rows report mean, std and min over them.
        variants: subset of VARIANTS (all by default).
        baselines: subset of baselines.BASELINES (all by default); an empty list runs none.
        timer: collects the stage times (a new one when None).
        progress: progress bars and per-epoch lines.
        n_examples: test products drawn in the product-history plots.
        meta: extra facts stored in results.json (command, data, split, machine).
    Returns:
        the results dict written to results.json: {"rows": [...], "timings": {...}, ...}.

    >>> run_benchmark(parts, TrendConfig().to_dict(), "runs/bench", seeds=[0])["rows"][0]["name"]  # doctest: +SKIP
    'majority'
    """
    from trendnlp.benchmark.baselines import run_baselines
    from trendnlp.benchmark.report import write_report

    out, timer = Path(out_dir), timer or Timer()
    out.mkdir(parents=True, exist_ok=True)
    variants = list(variants or VARIANTS)
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    for name in ("train", "validation", "test"):
        if not parts.get(name):
            raise ValueError(f"the {name} part is empty; check the --{name[:3] if name != 'validation' else 'val'}"
                             "-cutoffs range against the data's cutoffs")
    with timer.stage("write split records"):
        data = write_splits(parts, out / "data")
    rule = TrendConfig.from_dict(base_config).labels.rule()
    rows: list[dict] = []
    if baselines is None or len(baselines):
        with timer.stage("baselines"):
            for row in run_baselines(parts["train"], parts["validation"], parts["test"], rule, seed=seeds[0],
                                     progress=progress, names=baselines):
                rows.append({**row, "kind": "baseline", "seeds": [seeds[0]]})
    for variant in variants:
        runs = []
        for seed in seeds:
            config = variant_config(base_config, variant, seed, data)
            with timer.stage(f"{variant} seed {seed}"):
                runs.append(train_variant(config, out / "runs" / variant / f"seed_{seed}", progress=progress))
            r = runs[-1]
            print(f"[benchmark] {variant} seed {seed}: validation macro-F1 {r['val_macro_f1']:.4f} "
                  f"(epoch {r['best_epoch']}), test macro-F1 {r['macro_f1']:.4f}")
        rows.append(aggregate(variant, runs))
    fused = select_fused(rows)
    if fused is not None:
        rows.append(fused)
    results = {"rows": rows, "seeds": list(seeds), "config": base_config,
               "records": {k: len(v) for k, v in parts.items()}, **(meta or {})}
    with timer.stage("report"):
        write_report(results, parts, out, n_examples=n_examples, timings=timer.stages)
    results["timings"] = {**timer.stages, "total": timer.total}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


# ---- command line --------------------------------------------------------------------------------
def load_config_dict(args: argparse.Namespace) -> dict:
    """The benchmark config as a validated dict: YAML, then the shortcut options, then every --set."""
    path = Path(args.config) if args.config else DEFAULT_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"config {path} not found; pass --config configs/benchmark_online_retail.yaml "
                                "(from a checkout of the repository) or your own YAML")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    shortcuts = [f"labels.{k}={getattr(args, k)}" for k in ("K", "F", "alpha", "tau") if getattr(args, k) is not None]
    if args.history is not None:
        shortcuts.append(f"sales.history={args.history}")
    if args.base_model:
        shortcuts.append(f"text.base_model={args.base_model}")
    if args.epochs is not None or args.quick:
        shortcuts.append(f"train.epochs={args.epochs or 1}")
    apply_overrides(raw, shortcuts + list(args.set))
    return TrendConfig.from_dict(raw, source=str(path)).to_dict()


def run_benchmark_cli(args: argparse.Namespace) -> int:
    """`trendnlp benchmark`: prepare, split, run everything, write the report, print the table and timings."""
    from trendnlp.benchmark.report import format_results_table
    from trendnlp.data.split import split_by_cutoff

    if not (args.sales or args.records):
        raise ValueError("give the order log with --sales PATH (or prepared records with --records PATH)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    progress = not args.no_progress
    timer = Timer()
    base = load_config_dict(args)
    config = TrendConfig.from_dict(base)
    seeds = parse_seeds(args.seeds or ("0" if args.quick else ",".join(map(str, DEFAULT_SEEDS))))
    ranges = {k: parse_range(getattr(args, f"{k}_cutoffs"), f"--{k}-cutoffs") for k in ("train", "val", "test")}
    if config.labels.F > args.horizon:
        raise ValueError(f"labels.F={config.labels.F} looks further ahead than --horizon {args.horizon}; "
                         "raise --horizon or lower --F")
    with timer.stage("prepare"):
        records, notes = prepare_records(args, config, progress=progress)
        records = subsample_products(records, args.max_products or (300 if args.quick else None))
        print("\n".join(notes))
    with timer.stage("split"):
        train, val, test = split_by_cutoff(records, ranges["train"], ranges["val"], ranges["test"],
                                           horizon=args.horizon, freq=args.freq)
        print(f"split: train {len(train):,}, validation {len(val):,}, test {len(test):,} records")
    names = None if args.baselines is None else [] if args.baselines.lower() == "none" else \
        [b.strip() for b in args.baselines.split(",") if b.strip()]
    meta = {"options": {k: v for k, v in vars(args).items() if k != "func"},
            "split": {k: list(v) for k, v in ranges.items()}, "machine": machine_description()}
    results = run_benchmark({"train": train, "validation": val, "test": test}, base, args.out, seeds,
                            variants=[v.strip() for v in args.variants.split(",") if v.strip()], baselines=names,
                            timer=timer, progress=progress, n_examples=args.examples, meta=meta)
    print()
    print(format_results_table(results["rows"]))
    print()
    print("time per stage (s): " + ", ".join(f"{k} {v:.1f}" for k, v in results["timings"].items()))
    print(f"results in {args.out}: results.md, results.json, report.html")
    return 0


def machine_description() -> dict:
    """CPU count, processor, Python and torch versions, and the GPU if any (stored with the results)."""
    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
