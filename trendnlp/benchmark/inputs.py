"""The benchmark's inputs: records from an order log (a preset or generic columns), the split files, the config
with its command-line shortcuts, option parsing, and the machine description stored with results.

`trendnlp benchmark` (run.py) and `trendnlp backtest` (backtest.py) both read their data through here.
"""
from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trendnlp.benchmark.args import DEFAULT_CONFIG
from trendnlp import options
from trendnlp.config import TrendConfig, apply_overrides, read_yaml
from trendnlp.data.record_files.channels import carried_channels, column_options, context_channels, require_channels
from trendnlp.options import parse_date_range

# without a preset: prepare's column arguments and their defaults (a channel's column, from the registry: none)
_GENERIC_COLUMNS = {"product_col": "product_id", "time_col": "timestamp", "units_col": "units", "title_col": "title",
                    "description_col": "description"}


def parse_range(text: str | Sequence[str], what: str) -> tuple[str, str]:
    """`FROM:TO` (ISO dates, inclusive, FROM <= TO) -> (FROM, TO); an already parsed pair passes through.

    >>> parse_range("2011-05-29:2011-08-14", "--train-cutoffs")
    ('2011-05-29', '2011-08-14')
    """
    return tuple(text) if isinstance(text, (tuple, list)) else parse_date_range(text, what)


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """`0,1,2` -> [0, 1, 2] (distinct whole numbers >= 0); an already parsed list passes through.

    >>> parse_seeds("0, 1,2")
    [0, 1, 2]
    """
    return list(text) if isinstance(text, (tuple, list)) else options.parse_seeds(text)


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
    from trendnlp.data.orderlog.presets import get_preset, prepare_preset
    from trendnlp.data.orderlog.prepare import prepare

    rule = config.labels.rule()
    if args.records:  # a file, or a folder of parts (`prepare --num-shards`)
        from trendnlp.data.record_files.parts import read_parts

        return read_parts(args.records, history=config.sales.history, rule=rule), [f"records: {args.records}"]
    opts = {"history": config.sales.history, "horizon": args.horizon, "stride": args.stride,
            "min_history_units": args.min_history_units, "freq": args.freq, "rule": rule}
    if args.preset and args.preset.lower() != "none":
        # the file's own column -> the name the preset expects (only for the --*-col options given)
        renames = {getattr(args, k): v for k, v in get_preset(args.preset).columns.items()
                   if v and getattr(args, k, None)}
        sales = _read_renamed(args.sales, renames) if renames else args.sales
        result = prepare_preset(args.preset, sales, reviews=args.reviews, progress=progress, **opts)
    else:
        generic = {**_GENERIC_COLUMNS, **dict.fromkeys(column_options())}
        cols = {k: getattr(args, k, None) or default for k, default in generic.items()}
        # before reading: a channel the config feeds needs its column (market_sales comes from the units)
        require_channels(config.sales, {c.name for c in context_channels() if not c.column or cols.get(c.column)},
                         str(args.sales))
        texts = args.texts or (args.sales if args.texts is None and _has_text_columns(args.sales, cols) else None)
        result = prepare(args.sales, texts=texts, reviews=args.reviews, progress=progress, **cols, **opts)
    return result.records, result.summary().splitlines()


def _read_renamed(path: str, renames: dict[str, str]):
    """The sales file as a DataFrame with the user's column names mapped to the preset's."""
    import pandas as pd

    from trendnlp.data.record_files.io import detect_format

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
    from trendnlp.data.orderlog.tables import _file_columns
    from trendnlp.data.record_files.io import detect_format

    names = set(_file_columns(path, detect_format(path)))
    return bool({cols["title_col"], cols["description_col"]} & names)


def start_run(args: argparse.Namespace) -> tuple[dict, TrendConfig]:
    """The start shared by `trendnlp benchmark` and `trendnlp backtest`: an input is given, torch's threads are
    set, and the config (YAML, shortcuts, --set) is read and checked against --horizon.

    Returns:
        (the validated config dict, the same as a TrendConfig).
    """
    if not (args.sales or args.records):
        raise ValueError("give the order log with --sales PATH (or prepared records with --records PATH)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    base = load_config_dict(args)
    config = TrendConfig.from_dict(base)
    if config.labels.F > args.horizon:
        raise ValueError(f"labels.F={config.labels.F} looks further ahead than --horizon {args.horizon}; "
                         "raise --horizon or lower --F")
    return base, config


def run_records(args: argparse.Namespace, config: TrendConfig, progress: bool = True) -> list[dict]:
    """The records a run works on: prepared (or read), subsampled by --max-products / --quick, notes printed."""
    records, notes = prepare_records(args, config, progress=progress)
    require_channels(config.sales, carried_channels(records), str(args.records or args.sales))
    records = subsample_products(records, args.max_products or (300 if args.quick else None))
    print("\n".join(notes))
    return records


def load_config_dict(args: argparse.Namespace) -> dict:
    """The benchmark config as a validated dict: YAML, then the shortcut options, then every --set."""
    path = Path(args.config) if args.config else DEFAULT_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"config {path} not found; pass --config with your own YAML (the shipped one is "
                                f"{DEFAULT_CONFIG})")
    raw = read_yaml(path)
    shortcuts = [f"labels.{k}={getattr(args, k)}" for k in ("K", "F", "alpha", "tau") if getattr(args, k) is not None]
    if args.history is not None:
        shortcuts.append(f"sales.history={args.history}")
    if args.base_model:
        shortcuts.append(f"text.base_model={args.base_model}")
    if args.epochs is not None or args.quick:
        shortcuts.append(f"train.epochs={args.epochs or 1}")
    apply_overrides(raw, shortcuts + list(args.set))
    return TrendConfig.from_dict(raw, source=str(path)).to_dict()


def names_option(option: str | Sequence[str] | None, what: str = "names") -> list[str] | None:
    """A comma-separated option (text, or the list its argparse type made): None (all) for None or `all`, []
    for `none`, else the names (distinct).

    >>> names_option("none"), names_option(["all"]), names_option("a,b")
    ([], None, ['a', 'b'])
    """
    if option is None:
        return None
    names = options.parse_names(option, what, keywords=("all", "none")) if isinstance(option, str) else list(option)
    if names == ["all"]:
        return None
    return [] if names == ["none"] else names


def machine_description() -> dict:
    """CPU count, processor, Python and torch versions, and the GPU if any (stored with the results)."""
    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
