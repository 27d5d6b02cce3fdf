"""`trendnlp benchmark` options and the neural variants, kept free of heavy imports so `--help` is quick."""
from __future__ import annotations

import argparse

from trendnlp.configs import config_path
from trendnlp.data.record_files.channels import context_channels
from trendnlp.data.record_files.split import ONLINE_RETAIL_SPLIT
from trendnlp.options import (COUNT, DATE_RANGE, NUMBER, PERIODS, POSITIVE, SEEDS, THREADS, arg, parse_names,
                              parse_number)

DEFAULT_CONFIG = config_path("online_retail")
DEFAULT_SEEDS = (0, 1, 2)
KEYWORDS = ("all", "none")  # --variants / --baselines / --forecasters: every one or none of them
POSITIVE_NUMBER = arg(parse_number, above=True)  # --alpha, --tau (the label rule needs them > 0)

# the neural rows: the benchmark config with one switch flipped each (applied after the user's --set)
VARIANTS: dict[str, list[str]] = {
    "sales_only": ["text.enabled=false"],
    "text_only": ["sales.enabled=false"],
    "fused_concat": ["fusion.method=concat"],
    "fused_gated": ["fusion.method=gated"],
    "fused_cross_attention": ["fusion.method=cross_attention"],
}
# the product rows: the saved model exactly as `trendnlp train --sales/--records` builds it (training.pipeline),
# each with its branches' own rows (`trendnlp:neural`, `trendnlp:boosting`) from the same run, at no extra cost
PRODUCT_VARIANTS: dict[str, list[str]] = {
    "trendnlp": [],
    "trendnlp_refit": ["train.refit=true"],  # retrained on every label known before test with the chosen settings
}
BRANCHES = ("neural", "boosting")
# the backtest's default rows: the product, its branches alone, and the strongest peers raw and with offsets
DEFAULT_ROWS = ("trendnlp", "trendnlp:neural", "trendnlp:boosting", "gbm_all", "gbm_all+offsets", "gbm_all_text",
                "gbm_all_text+offsets")


def add_arguments(p: argparse.ArgumentParser, backtest: bool = False) -> None:
    """The `trendnlp benchmark` options (cli.py calls this on its subparser); with `backtest`, the data, record,
    config and run options they share plus the backtest's own (origins instead of fixed split ranges)."""
    src = p.add_argument_group("data")
    src.add_argument("--sales", default=None, help="order log (.parquet, .csv, .jsonl), e.g. "
                     "online_retail_ii.parquet (UCI Online Retail II as one table: docs/benchmark.md)")
    src.add_argument("--records", default=None, help="already prepared records instead of --sales")
    src.add_argument("--preset", default="online-retail", help="dataset preset for cleaning and columns "
                     "(default online-retail; `none` for a generic log with --product-col etc.)")
    src.add_argument("--texts", default=None, help="without a preset: product text table (product, title, ...)")
    src.add_argument("--reviews", default=None, help="reviews table: product id, timestamp, text")
    src.add_argument("--out", required=True, help="output folder: " + ("backtest.json, backtest.md, backtest.png, "
                     "origin_*/ (each origin's benchmark output)" if backtest else "results.json, results.md, "
                     "report.html, plots"))
    cols = p.add_argument_group("column names (with the preset only where the file differs from UCI Online "
                                "Retail I/II; both UCI spellings are recognised anyway)")
    for name, help_ in (("product", "product id (StockCode)"), ("time", "order timestamp (InvoiceDate)"),
                        ("units", "units sold (Quantity)")):
        cols.add_argument(f"--{name}-col", default=None, help=help_)
    for channel in context_channels():  # one option per channel built from a log column (--price-col, ...)
        if channel.column:
            cols.add_argument(channel.cli_flag, default=None, help=f"the `{channel.name}` channel's column "
                              f"({channel.help})")
    for name, help_ in (("title", "product text (Description)"), ("description", "longer product text")):
        cols.add_argument(f"--{name}-col", default=None, help=help_)
    win = p.add_argument_group("records and label rule (defaults: the label rule of docs/data.md and the benchmark protocol, or the config)")
    win.add_argument("--freq", choices=("W", "D", "M"), default="W", help="period length (default W, weeks "
                     "ending Sunday)")
    win.add_argument("--history", type=PERIODS, default=None, help="periods of history per record (config "
                     "sales.history, 26)")
    win.add_argument("--horizon", type=PERIODS, default=4, help="future periods per record; also the purge "
                     "between split parts (default 4)")
    win.add_argument("--stride", type=PERIODS, default=1, help="periods between cutoffs (default 1)")
    win.add_argument("--min-history-units", type=NUMBER, default=10.0, help="keep records with at least this "
                     "many units in their history (default 10)")
    for name, tp, help_ in (("K", POSITIVE, "history periods averaged into `recent`"),
                            ("F", POSITIVE, "future periods averaged into `future`"),
                            ("alpha", POSITIVE_NUMBER, "additive smoothing"),
                            ("tau", POSITIVE_NUMBER, "relative change threshold")):
        win.add_argument(f"--{name}", type=tp, default=None, help=f"{help_} (config labels.{name})")
    if backtest:
        bt = p.add_argument_group("origins (docs/backtest.md: at origin O, train cutoffs up to O-10 periods, validation "
                                  "O-6 … O-4, test O … O+2)")
        bt.add_argument("--origins", type=DATE_RANGE, default=None, metavar="FIRST:LAST", help="first and last "
                        "origin (ISO dates, inclusive, FIRST <= LAST), e.g. 2011-03-13:2011-10-23 (default: every "
                        "--every periods over the log's last year, back from the latest possible origin; on the "
                        "two-year file 2011-01-16 … 2011-10-23)")
        bt.add_argument("--every", type=PERIODS, default=8, help="periods between origins (default 8)")
        bt.add_argument("--rows", type=arg(parse_names), default=",".join(DEFAULT_ROWS),
                        help="table rows: trendnlp (the saved model as `trendnlp train` builds it), trendnlp:neural "
                        "and trendnlp:boosting (its branches alone, same run), trendnlp_refit (refit on every "
                        "label known before test), fused (the config's fusion method alone), neural variants "
                        f"({','.join(VARIANTS)}), baselines (name or name+offsets) (default %(default)s)")
        bt.add_argument("--update", action="store_true", help="warm-start each neural run from its model at the "
                        "previous origin instead of training from scratch")
    else:
        split = p.add_argument_group("split by cutoff date, inclusive FROM:TO (defaults: the benchmark protocol of docs/benchmark.md; train starts "
                                     "at the first cutoff of the file when that is later)")
        for part, key in (("train", "train"), ("val", "val"), ("test", "test")):
            first, last = ONLINE_RETAIL_SPLIT[key]
            split.add_argument(f"--{part}-cutoffs", type=DATE_RANGE, default=(first, last), metavar="FROM:TO",
                               help=f"default {first}:{last}")
    run = p.add_argument_group("runs")
    run.add_argument("--config", default=None, help=f"YAML config of our model (default: the shipped {DEFAULT_CONFIG.name}, "
                     "also at configs/benchmark_online_retail.yaml in the repository)")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
    run.add_argument("--seeds", type=SEEDS, default=[0] if backtest else None,
                     help="training seeds, distinct (default 0" + (")" if backtest
                                                                     else ",1,2, with --quick 0; --seeds 0 for a "
                                                                     "one-seed run)"))
    if backtest:
        _add_scale_arguments(p)
        return
    run.add_argument("--variants", type=arg(parse_names, known=[*PRODUCT_VARIANTS, *VARIANTS], keywords=KEYWORDS),
                     default=None,
                     help="model rows to train, comma-separated (default: trendnlp, the saved model with its branches "
                     "alone, and sales_only; `all` for every product variant and ablation: "
                     f"{','.join([*PRODUCT_VARIANTS, *VARIANTS])}; `none` for none)")
    run.add_argument("--baselines", type=arg(parse_names, known=_baseline_names, keywords=KEYWORDS), default=None,
                     help="baselines to run, comma-separated (default all; "
                     "`none` for none)")
    run.add_argument("--forecasters", type=arg(parse_names, known=_forecaster_names, keywords=KEYWORDS),
                     default=None, help="statsforecast models to run, comma-separated (default "
                     "all: AutoETS,CrostonOptimized,ADIDA,IMAPA; `none` for none; needs trendnlp[forecast])")
    run.add_argument("--examples", type=COUNT, default=6, help="test products plotted with their prediction")
    _add_scale_arguments(p)


def _baseline_names() -> list[str]:
    from trendnlp.benchmark.baselines import BASELINES  # sklearn and LightGBM: only once --baselines is given

    return list(BASELINES)


def _forecaster_names() -> list[str]:
    from trendnlp.benchmark.forecasters import FORECASTERS

    return list(FORECASTERS)


def _add_scale_arguments(p: argparse.ArgumentParser) -> None:
    small = p.add_argument_group("scale down (CI, smoke runs)")
    small.add_argument("--max-products", type=POSITIVE, default=None, help="keep a random subset of this many products")
    small.add_argument("--base-model", default=None, help="text encoder name or folder (sets text.base_model)")
    small.add_argument("--epochs", type=POSITIVE, default=None, help="maximum epochs (sets train.epochs)")
    small.add_argument("--quick", action="store_true", help="one seed, one epoch, at most 300 products")
    p.add_argument("--threads", type=THREADS, default=1, help="torch CPU threads (default 1: on shared cores, spinning "
                   "OpenMP threads made training up to 20x slower; raise it on a quiet machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
