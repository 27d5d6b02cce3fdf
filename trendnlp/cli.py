"""`trendnlp` command line: thin argument parsing over the library (DESIGN §5).

    trendnlp prepare   order log (+ texts, reviews) -> product records
    trendnlp train     fine-tune a model from a YAML config (alias: finetune)
    trendnlp evaluate  metrics table, metrics.json and a confusion-matrix PNG for a saved model
    trendnlp label     label a whole catalog file, streaming and resumable
    trendnlp export    ONNX graphs (+ int8) and/or a self-contained model folder
    trendnlp benchmark the Online Retail benchmark: every baseline and ablation in one table
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from trendnlp.labels import LabelRule
from trendnlp.data.records import RecordError


def _add_rule_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("label rule (DESIGN §2)")
    g.add_argument("--K", type=int, default=4, help="history periods averaged into `recent` (default 4)")
    g.add_argument("--F", type=int, default=4, help="future periods averaged into `future` (default 4)")
    g.add_argument("--alpha", type=float, default=1.0, help="additive smoothing (default 1.0)")
    g.add_argument("--tau", type=float, default=0.25, help="relative change threshold (default 0.25)")


def _rule(args: argparse.Namespace) -> LabelRule:
    return LabelRule(K=args.K, F=args.F, alpha=args.alpha, tau=args.tau)


def _add_prepare_args(p: argparse.ArgumentParser, with_out: bool = True) -> None:
    p.add_argument("--sales", required=True, help="long-format sales table (.csv or .parquet): one row per order line")
    p.add_argument("--preset", default=None, help="known dataset with its cleaning rules, e.g. online-retail")
    p.add_argument("--texts", default=None, help="product text table: product id, title, description [, timestamp]")
    p.add_argument("--reviews", default=None, help="reviews table: product id, timestamp, text")
    p.add_argument("--product-col", default="product_id", help="product id column (default product_id)")
    p.add_argument("--time-col", default="timestamp", help="timestamp column (default timestamp)")
    p.add_argument("--units-col", default="units", help="units column (default units)")
    p.add_argument("--price-col", default=None, help="optional price column (validated)")
    p.add_argument("--freq", choices=("W", "D", "M"), default=None, help="period: W (weeks ending Sunday), D or M")
    p.add_argument("--history", type=int, default=None, help="periods of history per record (default 26)")
    p.add_argument("--horizon", type=int, default=None, help="future periods per record (default 4)")
    p.add_argument("--stride", type=int, default=None, help="periods between cutoffs (default 1)")
    p.add_argument("--min-history-units", type=float, default=None, help="keep records with at least this many "
                   "units in their history (default 10)")
    p.add_argument("--max-reviews", type=int, default=None, help="newest reviews kept per record (default 5)")
    if with_out:
        p.add_argument("--out", required=True, help="output records: .parquet, .jsonl or .csv")
    _add_rule_args(p)


def prepare_from_args(args: argparse.Namespace, progress: bool = True):
    """Run `prepare` / `prepare_preset` from parsed `prepare` options."""
    from trendnlp.data.presets import prepare_preset
    from trendnlp.data.prepare import prepare

    opts = {k: getattr(args, k) for k in ("freq", "history", "horizon", "stride", "min_history_units", "max_reviews")}
    opts = {k: v for k, v in opts.items() if v is not None}
    if args.preset:
        return prepare_preset(args.preset, args.sales, reviews=args.reviews, rule=_rule(args), progress=progress,
                              **opts)
    return prepare(args.sales, product_col=args.product_col, time_col=args.time_col, units_col=args.units_col,
                   price_col=args.price_col, texts=args.texts, reviews=args.reviews, rule=_rule(args),
                   progress=progress, **opts)


def cmd_prepare(args: argparse.Namespace) -> int:
    from trendnlp.data.records import write_records

    start = time.perf_counter()
    result = prepare_from_args(args)
    n = write_records(result.records, args.out)
    print(result.summary())
    print(f"wrote {n:,} records to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from trendnlp.config import TrendConfig
    from trendnlp.evaluation.metrics import format_metrics_table
    from trendnlp.training import train

    config = TrendConfig.from_yaml(args.config, overrides=args.set)
    result = train(config, args.output_dir, resume=args.resume, progress=not args.no_progress)
    if result.get("is_main_process", True):
        for split in ("validation", "test"):
            if result.get(split):
                print(f"\n{split} (best model, {Path(args.output_dir) / 'model'}):")
                print(format_metrics_table(result[split]))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from trendnlp.evaluation.metrics import format_metrics_table
    from trendnlp.training import evaluate

    out = args.out or str(Path(args.model) / "eval")
    metrics = evaluate(args.model, args.data, out_dir=out, batch_size=args.batch_size, on_error=args.on_error)
    print(format_metrics_table(metrics))
    print(f"metrics.json and confusion_matrix.png in {out}")
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    from trendnlp.inference.labeling import run

    run(args)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from trendnlp.inference.export import export_model

    summary = export_model(args.model, out=args.out, fmt=args.format, int8=args.int8,
                           self_contained=args.self_contained)
    print(f"exported {args.model} to {summary['dir']} in {summary['seconds']} s: {', '.join(summary['files'])}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from trendnlp.benchmark.run import run_benchmark_cli

    return run_benchmark_cli(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trendnlp", description="Sales-trend classification from product text "
                                     "and sales history.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="order log (+ texts, reviews) -> leakage-safe product records")
    _add_prepare_args(p)
    p.set_defaults(func=cmd_prepare)

    for name in ("train", "finetune"):
        p = sub.add_parser(name, help="fine-tune a model from a YAML config" + (" (alias of train)" if name != "train"
                                                                                 else ""))
        p.add_argument("--config", required=True, help="YAML config (see configs/)")
        p.add_argument("--output-dir", required=True, help="run folder; the best model is exported to DIR/model")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
        p.add_argument("--resume", action="store_true", help="continue from the latest saved state in DIR/checkpoints")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a saved model on labelled records")
    p.add_argument("--model", required=True, help="saved model folder")
    p.add_argument("--data", required=True, help="labelled records (.jsonl, .csv, .parquet)")
    p.add_argument("--out", default=None, help="folder for metrics.json and confusion_matrix.png (default MODEL/eval)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    p.set_defaults(func=cmd_evaluate)

    from trendnlp.inference.labeling_args import add_arguments  # light: no torch before a command runs

    p = sub.add_parser("label", help="label every row of a catalog file (streaming, resumable)")
    add_arguments(p)
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("export", help="ONNX graphs (--format onnx [--int8]) and/or a self-contained model folder")
    p.add_argument("--model", required=True, help="saved model folder")
    p.add_argument("--format", choices=("onnx",), default=None, help="onnx: write model.onnx and head.onnx")
    p.add_argument("--int8", action="store_true", help="with --format onnx: also model.int8.onnx (dynamic int8)")
    p.add_argument("--self-contained", action="store_true", help="store the LoRA-merged encoder under encoder/ so "
                   "the folder loads without its base model")
    p.add_argument("--out", default=None, help="target folder (default: update the model folder in place)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("benchmark", help="Online Retail benchmark: prepare, split, train, baselines, report")
    try:
        from trendnlp.benchmark.args import add_arguments as add_benchmark_arguments

        add_benchmark_arguments(p)
    except ImportError:  # pragma: no cover - the benchmark module is optional during development
        pass
    p.set_defaults(func=cmd_benchmark)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (RecordError, ValueError, FileNotFoundError) as e:
        # bad input or options: one clear line, exit code 2 (argparse's convention for usage errors)
        print(f"trendnlp {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
