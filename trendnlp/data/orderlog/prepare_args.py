"""The order-log options of `trendnlp prepare`, `train --sales` and `label --sales` (argparse), and the `prepare`
keyword options they give: one definition for the three verbs, one option per channel of the registry.

Kept free of heavy imports so `trendnlp --help` stays quick (`prepare_from_args` imports the preparing code when
it runs).
"""
from __future__ import annotations

import argparse

from trendnlp.data.record_files.channels import column_options, context_channels
from trendnlp.labels import DEFAULT_RULE, RULE_HELP, LabelRule
from trendnlp.options import COUNT, NUMBER, PERIODS, POSITIVE, arg, parse_number


def add_rule_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("label rule (docs/data.md)")
    above_zero = arg(parse_number, above=True)
    for name, kind in (("K", POSITIVE), ("F", POSITIVE), ("alpha", above_zero), ("tau", above_zero)):
        default = getattr(DEFAULT_RULE, name)
        g.add_argument(f"--{name}", type=kind, default=default, help=f"{RULE_HELP[name]} (default {default})")


def rule_from_args(args: argparse.Namespace) -> LabelRule:
    return LabelRule(K=args.K, F=args.F, alpha=args.alpha, tau=args.tau)


def add_prepare_arguments(p: argparse.ArgumentParser, with_out: bool = True, for_label: bool = False,
                          for_train: bool = False) -> None:
    p.add_argument("--sales", required=not (for_label or for_train), help="long-format sales table (.csv or "
                   ".parquet): one row per order line" + (" (label every product active in it; instead of --input)"
                                                          if for_label else " (prepare, split by cutoff and train on "
                                                          "it; instead of --config's split files)" if for_train
                                                          else ""))
    p.add_argument("--preset", default=None, help="known dataset with its cleaning rules, e.g. online-retail")
    p.add_argument("--texts", default=None, help="product text table: product id, title, description [, timestamp]")
    p.add_argument("--reviews", default=None, help="reviews table: product id, timestamp, text")
    p.add_argument("--product-col", default="product_id", help="product id column (default product_id)")
    p.add_argument("--time-col", default="timestamp", help="timestamp column (default timestamp)")
    p.add_argument("--units-col", default="units", help="units column (default units)")
    for channel in context_channels():  # one option per channel built from a log column (--price-col, ...)
        if channel.column:
            p.add_argument(channel.cli_flag, default=None, help=f"optional column for the `{channel.name}` channel "
                           f"({channel.help}); without it records carry no `{channel.name}`")
    p.add_argument("--freq", choices=("W", "D", "M"), default=None, help="period: W (weeks ending Sunday), D or M")
    if not for_train:  # training windows are as long as the config's sales.history
        p.add_argument("--history", type=PERIODS, default=None, help="periods of history per record (default "
                       + ("the model's)" if for_label else "26)"))
    if not for_label:
        p.add_argument("--horizon", type=PERIODS, default=None, help="future periods per record (default 4)")
        p.add_argument("--stride", type=PERIODS, default=None, help="periods between cutoffs (default 1)")
    p.add_argument("--min-history-units", type=NUMBER, default=None, help="keep records with at least this many "
                   "units in their history (default " + ("1 with --sales: every active product)" if for_label
                                                          else "10)"))
    p.add_argument("--max-reviews", type=COUNT, default=None, help="newest reviews kept per record (default 5)")
    if for_train:  # the label rule comes from the config (--set labels.K=...), the split sizes from here
        p.add_argument("--records", default=None, help="prepared records (.jsonl, .csv, .parquet) instead of --sales")
        p.add_argument("--test-periods", type=PERIODS, default=3, help="newest labelled cutoffs held out for test "
                       "(default 3)")
        p.add_argument("--val-periods", type=PERIODS, default=3, help="cutoffs for validation, ending one label "
                       "horizon (labels.F periods) before test (default 3); train ends one horizon before them")
        return
    if for_label:
        p.add_argument("--as-of", default="latest", metavar="DATE", help="cutoff: the last period ending on or "
                       "before DATE (default: the log's last complete period)")
        return
    p.add_argument("--as-of", nargs="?", const="latest", default=None, metavar="DATE",
                   help="one record per product at the last period ending on or before DATE, no future and no "
                   "label, for labeling (no DATE: the log's last complete period); --horizon / --stride do not apply")
    if with_out:
        p.add_argument("--out", required=True, help="output records: .parquet, .jsonl or .csv")
        p.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="stop at the first bad input "
                       "row, or skip every bad row and list it (file, line, column, reason) in --errors")
        p.add_argument("--errors", default=None, help="errors file for skipped rows (default <out>.errors.csv)")
        p.add_argument("--num-shards", type=POSITIVE, default=1, help="split the products into N shards by a stable "
                       "hash of their id and build only --shard-index's records (N processes or machines, one "
                       "shard each: their parts together are the one-process records; default 1)")
        p.add_argument("--shard-index", type=COUNT, default=0, help="which shard to build, 0 .. N-1 (default 0)")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_rule_arguments(p)


def prepare_options(args: argparse.Namespace) -> dict:
    """`prepare` keyword options from parsed `prepare` (or `label --sales`) options; unset ones left out."""
    opts = {k: getattr(args, k, None) for k in ("freq", "history", "horizon", "stride", "min_history_units",
                                                 "max_reviews")}
    opts = {k: v for k, v in opts.items() if v is not None}
    opts["reviews"] = args.reviews
    if hasattr(args, "K"):
        opts["rule"] = rule_from_args(args)
    if not args.preset:  # a preset fixes its columns and text source
        opts.update(product_col=args.product_col, time_col=args.time_col, units_col=args.units_col,
                    texts=args.texts, **{col: getattr(args, col) for col in column_options()})
    return opts


def prepare_from_args(args: argparse.Namespace, progress: bool = True):
    """Run `prepare` / `prepare_preset` from parsed `prepare` options."""
    from trendnlp.data.orderlog.presets import prepare_log

    opts = prepare_options(args)
    if getattr(args, "on_error", "raise") != "raise":
        opts["on_error"] = args.on_error
    if getattr(args, "out", None):  # `prepare`: records go to the file a chunk at a time, in one shard or all
        opts.update(out=args.out, num_shards=args.num_shards, shard_index=args.shard_index)
    return prepare_log(args.sales, preset=args.preset, as_of=getattr(args, "as_of", None), progress=progress,
                       **opts)
