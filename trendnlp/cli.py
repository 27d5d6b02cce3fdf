"""`trendnlp` command line: thin argument parsing over the library (docs/guide.md shows every verb).

    trendnlp prepare   order log (+ texts, reviews) -> product records
    trendnlp train     train on an order log or records file (split by cutoff), or a config's split files
    trendnlp evaluate  metrics table, metrics.json and a confusion-matrix PNG for a saved model
    trendnlp label     label every active product of an order log as of a date, or a whole records file
    trendnlp explain   per-record explanations (text vs sales, salient weeks, top words) as JSONL and HTML
    trendnlp export    ONNX graphs (+ int8) and/or a self-contained model folder
    trendnlp serve     serve a saved model over HTTP (predict, explain, metadata, reload, metrics)
    trendnlp benchmark the Online Retail benchmark: every baseline and ablation in one table
    trendnlp backtest  the benchmark repeated at rolling origins (docs/backtest.md): per-origin table, mean, wins, plot
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from trendnlp.data.orderlog.prepare_args import add_prepare_arguments, prepare_from_args, prepare_options
from trendnlp.options import COUNT, POSITIVE, arg, parse_count

STEPS = arg(parse_count, maximum=1024)  # Integrated Gradients steps: more only costs time


def cmd_prepare(args: argparse.Namespace) -> int:
    from trendnlp.outputs import default_errors_path, output_lock

    start = time.perf_counter()
    with output_lock(args.out, "--out"):  # a second prepare into the same file is refused at once
        result = prepare_from_args(args, progress=not args.no_progress)  # writes --out a chunk at a time
        n = len(result)
        print(result.summary())
        if args.on_error == "skip":
            errors = args.errors or str(default_errors_path(args.out))
            result.errors.write(errors)
            print(f"{len(result.errors):,} bad input rows skipped, listed in {errors}")
    print(f"wrote {n:,} records to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from trendnlp.config import TrendConfig
    from trendnlp.evaluation.metrics import format_metrics_table

    one_table = args.sales or args.records
    if args.sales and args.records:
        raise ValueError("give one table: --sales ORDER_LOG or --records FILE, not both")
    if not (one_table or args.config):
        raise ValueError("give an order log (--sales LOG) or prepared records (--records FILE) to split and train "
                         "on, or --config CONFIG.yaml whose data.train / data.validation name the split files")
    options = {"resume": args.resume or args.resume_anyway, "resume_anyway": args.resume_anyway,
               "init_from": args.init_from}
    if one_table:
        from trendnlp.configs import default_config
        from trendnlp.training.pipeline import train_on_records

        config = TrendConfig.from_yaml(args.config or default_config(args.preset), overrides=args.set)
        records = _training_records(args, config)
        result = train_on_records(records, config, args.output_dir, test_periods=args.test_periods,
                                  val_periods=args.val_periods, progress=not args.no_progress, **options)
    else:
        from trendnlp.training import train

        config = TrendConfig.from_yaml(args.config, overrides=args.set)
        result = train(config, args.output_dir, progress=not args.no_progress, **options)
    if result.get("is_main_process", True):
        for split in ("validation", "test"):
            if result.get(split):
                print(f"\n{split} (saved model, {Path(args.output_dir) / 'model'}):")
                print(format_metrics_table(result[split]))
        for name, branch in (result.get("branches") or {}).items():
            scores = ", ".join(f"{part} macro-F1 {branch[part]['macro_f1']:.4f}" for part in ("validation", "test")
                               if (branch or {}).get(part))
            print(f"{name} branch alone: {scores}")
        if result.get("metrics_path"):
            print(f"split, metrics of the saved model and of each branch: {result['metrics_path']}")
    return 0


def _training_records(args: argparse.Namespace, config) -> list[dict]:
    """`train --sales` / `--records`: the labelled records, prepared with the config's history and label rule."""
    from trendnlp.training.pipeline import records_for_training

    return records_for_training(config, records=args.records, sales=args.sales, preset=args.preset,
                                prepare_options=prepare_options(args), progress=not args.no_progress)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from trendnlp.evaluation.metrics import format_metrics_table
    from trendnlp.evaluation.evaluate import evaluate

    out = args.out or str(Path(args.model) / "eval")
    metrics = evaluate(args.model, args.data, out_dir=out, batch_size=args.batch_size, on_error=args.on_error,
                       min_confidence=args.min_confidence)
    print(format_metrics_table(metrics))
    c = metrics["calibration"]
    print(f"\ncalibration (temperature {c['temperature']:.3f}): ECE ({c['n_bins']} bins) {c['ece_before']:.4f} before, "
          f"{c['ece_after']:.4f} after; Brier {c['brier_before']:.4f} before, {c['brier_after']:.4f} after")
    if args.min_confidence is not None:
        m = metrics["min_confidence"]
        print(f"min confidence {m['min_confidence']:g}: coverage {m['coverage']:.1%} ({m['n']} of {metrics['n']}), "
              f"accuracy of those {m['accuracy']:.4f} (all: {metrics['accuracy']:.4f})")
    print(f"metrics.json, confusion_matrix.png and reliability.png in {out}")
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    if (args.input is None) == (args.sales is None):
        raise ValueError("give either --sales ORDER_LOG (label every active product as of a date) or --input "
                         "RECORDS (label ready-made records), not both")
    if args.sales is None:
        from trendnlp.inference.labeling import run

        run(args)
        return 0
    from trendnlp.inference.as_of import label_log

    summary = label_log(args.model, args.sales, args.output, preset=args.preset, as_of=args.as_of,
                        prepare_options=prepare_options(args), progress=not args.no_progress,
                        batch_size=args.batch_size, window=args.window, dtype=args.dtype, on_error=args.on_error,
                        errors=args.errors, min_confidence=args.min_confidence, backend=args.backend)
    when = "the log's last complete period" if args.as_of == "latest" else f"as of {args.as_of}"
    print(f"labelled {summary['products']:,} products active in the history window up to cutoff "
          f"{summary['cutoff']} ({when}) -> {summary['output']} in {summary['seconds']:.1f} s")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from trendnlp.inference.serve import MissingExtraError, ServeSetupError, serve

    try:
        serve(args.model, host=args.host, port=args.port, max_body_bytes=args.max_body_bytes,
              max_records=args.max_records, batch_size=args.batch_size, text_cache=args.text_cache,
              max_batch_records=args.max_batch_records, max_wait_ms=args.max_wait_ms, api_key_file=args.api_key_file,
              allow_unauthenticated=args.allow_unauthenticated, grace_seconds=args.grace_seconds,
              log_level=args.log_level)
    except (MissingExtraError, ServeSetupError) as e:
        print(f"trendnlp serve: error: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    import json

    from trendnlp.data.record_files.records import read_records
    from trendnlp.model.explain import explain
    from trendnlp.model.classifier import TrendClassifier

    start = time.perf_counter()
    clf = TrendClassifier.from_pretrained(args.model)
    records = read_records(args.input, **clf.record_rules())
    records = records[: args.limit] if args.limit else records
    explanations = explain(clf, records, top_words=args.top_words, batch_size=args.batch_size,
                           text_steps=args.text_steps)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for e in explanations:
            f.write(json.dumps(e) + "\n")
    print(f"explained {len(explanations)} records in {time.perf_counter() - start:.1f} s -> {out}")
    if args.html:
        from trendnlp.inference.explain_report import write_explanations_html

        write_explanations_html(records, explanations, args.html)
        print(f"HTML report -> {args.html}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from trendnlp.inference.export import export_model

    summary = export_model(args.model, out=args.out, fmt=args.format, int8=args.int8,
                           self_contained=args.self_contained, calibration=args.calibration)
    print(f"exported {args.model} to {summary['dir']} in {summary['seconds']} s: {', '.join(summary['files'])}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from trendnlp.benchmark.run import run_benchmark_cli

    return run_benchmark_cli(args)


def cmd_backtest(args: argparse.Namespace) -> int:
    from trendnlp.benchmark.backtest import run_backtest_cli

    return run_backtest_cli(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trendnlp", description="Sales-trend classification from product text "
                                     "and sales history.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="order log (+ texts, reviews) -> leakage-safe product records")
    add_prepare_arguments(p)
    p.set_defaults(func=cmd_prepare)

    for name in ("train", "finetune"):
        p = sub.add_parser(name, help="train a model from an order log (--sales), prepared records (--records) or a "
                           "config's split files" + (" (alias of train)" if name != "train" else ""))
        p.add_argument("--config", default=None, help="YAML config (default with --sales / --records: the shipped "
                       "one, or the preset's; without them the config must name data.train and data.validation)")
        p.add_argument("--output-dir", required=True, help="run folder; the best model is exported to DIR/model")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
        p.add_argument("--resume", action="store_true", help="continue from the latest saved state in DIR/checkpoints")
        p.add_argument("--resume-anyway", action="store_true", help="resume even though the config or data files "
                       "differ from the checkpoint's (the new learning rates apply from there on)")
        p.add_argument("--init-from", default=None, metavar="MODEL_DIR", help="warm-start every weight, the logit "
                       "offsets and the feature scaling from an exported model (e.g. to update it with newer weeks)")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        add_prepare_arguments(p.add_argument_group("one table: an order log (as for `trendnlp prepare`) or "
                                                   "prepared records, split by cutoff into train / validation / test"),
                              with_out=False, for_train=True)
        p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a saved model on labelled records")
    p.add_argument("--model", required=True, help="saved model folder")
    p.add_argument("--data", required=True, help="labelled records (.jsonl, .csv, .parquet)")
    p.add_argument("--out", default=None, help="folder for metrics.json and confusion_matrix.png (default MODEL/eval)")
    p.add_argument("--batch-size", type=POSITIVE, default=128, help="records per batch (default 128)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    p.add_argument("--min-confidence", type=float, default=None, metavar="P",
                   help="also print coverage and accuracy of the records whose top probability is at least P")
    p.set_defaults(func=cmd_evaluate)

    from trendnlp.inference.labeling_args import add_arguments  # light: no torch before a command runs

    p = sub.add_parser("label", help="label every active product of an order log as of a date (--sales), or every "
                       "row of a records file (--input; streaming, resumable)")
    add_arguments(p, input_required=False)
    add_prepare_arguments(p.add_argument_group("order log (--sales; as for `trendnlp prepare`)"), for_label=True)
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("explain", help="why each prediction: text vs sales, salient weeks, top words (JSONL, HTML)")
    p.add_argument("--model", required=True, help="saved model folder")
    p.add_argument("--input", required=True, help="records (.jsonl, .csv, .parquet)")
    p.add_argument("--output", required=True, help="explanations, one JSON object per line (.jsonl)")
    p.add_argument("--html", default=None, help="also write an HTML page with one figure per product")
    p.add_argument("--limit", type=COUNT, default=0, help="explain only the first N records (0: all)")
    p.add_argument("--top-words", type=COUNT, default=8, help="words kept per record")
    p.add_argument("--batch-size", type=POSITIVE, default=256, help="records per pass")
    p.add_argument("--text-steps", type=STEPS, default=8, help="Integrated Gradients steps over the text (0: no top "
                   "words, several times faster)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("serve", help="serve a saved model over HTTP (FastAPI + uvicorn; pip install trendnlp[serve])")
    from trendnlp.inference.serve_args import add_arguments as add_serve_arguments  # light, as labeling_args

    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="ONNX graphs (--format onnx [--int8]) and/or a self-contained model folder")
    p.add_argument("--model", required=True, help="saved model folder")
    p.add_argument("--format", choices=("onnx",), default=None, help="onnx: write model.onnx and head.onnx")
    p.add_argument("--int8", action="store_true", help="with --format onnx: also model.int8.onnx (dynamic int8)")
    p.add_argument("--calibration", default=None, metavar="RECORDS", help="with --int8: the training records; their "
                   "texts calibrate the int8 encoder so its labels stay with fp32's (without it labels move more)")
    p.add_argument("--self-contained", action="store_true", help="store the LoRA-merged encoder under encoder/ so "
                   "the folder loads without its base model")
    p.add_argument("--out", default=None, help="target folder (default: update the model folder in place)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("benchmark", help="Online Retail benchmark: prepare, split, train, baselines, report")
    from trendnlp.benchmark.args import add_arguments as add_benchmark_arguments

    add_benchmark_arguments(p)
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("backtest", help="rolling-origin backtest (docs/backtest.md): the benchmark at several origins")
    add_benchmark_arguments(p, backtest=True)
    p.set_defaults(func=cmd_backtest)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `trendnlp` command; returns the exit code (0 ok, 2 any failure, 130 interrupted).

    A failure prints one line, `trendnlp <verb>: error: <message>`, to stderr and no traceback; `--debug`
    (anywhere on the line) re-raises instead, for the traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("TRENDNLP_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    _one_line_usage_errors(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed as one line
        return e.code if isinstance(e.code, int) else 2
    shown = warnings.showwarning
    warnings.showwarning = lambda message, category, *rest, **kw: print(  # one line per warning, like errors
        f"trendnlp {args.command}: warning: {' '.join(str(message).split())}", file=sys.stderr)
    try:
        check_paths(args)
        return args.func(args)
    except KeyboardInterrupt:
        print(f"trendnlp {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place that turns every failure into one line
        if debug:
            raise
        print(f"trendnlp {args.command}: error: {describe_error(e)}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = shown


_INPUT_OPTIONS = ("input", "data", "sales", "texts", "reviews", "records", "config")
_FILE_SUFFIXES = (".csv", ".jsonl", ".json", ".ndjson", ".parquet", ".pq", ".html", ".onnx")


def check_paths(args: argparse.Namespace) -> None:
    """Before any work: every output option must be creatable and must not be one of the inputs.

    Applies to any verb by option name: --output-dir (a folder), --output / --errors (files), --out (a file
    when it has a table suffix, else a folder).
    """
    from trendnlp.outputs import check_not_input, check_writable

    inputs = {f"--{k}": getattr(args, k) for k in _INPUT_OPTIONS if isinstance(getattr(args, k, None), str)}
    for dest in ("output_dir", "out", "output", "errors"):
        value = getattr(args, dest, None)
        if not isinstance(value, str) or not value:
            continue
        option = "--" + dest.replace("_", "-")
        is_dir = dest == "output_dir" or (dest == "out" and not value.lower().endswith(_FILE_SUFFIXES))
        check_writable(value, option, is_dir=is_dir)
        check_not_input(value, inputs, option)


def describe_error(e: BaseException) -> str:
    """One line for an exception: the message of an understood error, a summary plus a hint otherwise."""
    from trendnlp.errors import TrendError

    if isinstance(e, (TrendError, ValueError)):
        msg = str(e)
    elif isinstance(e, OSError) and e.filename is not None:  # names the file, without "[Errno 13]"
        msg = f"{e.filename}: {e.strerror or e}" + (f" -> {e.filename2}" if e.filename2 else "")
    elif isinstance(e, OSError):
        msg = str(e)
    elif isinstance(e, MemoryError):
        msg = "out of memory; lower the batch size (--batch-size / --set train.batch_size=...) or the window"
    else:
        msg = f"unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)"
    return " ".join(msg.split()) or type(e).__name__


def _one_line_usage_errors(parser: argparse.ArgumentParser) -> None:
    """argparse prints the whole usage before a bad option; print one line and point to --help instead."""
    parsers = [parser] + [p for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                          for p in a.choices.values()]
    for p in parsers:
        def error(message: str, prog: str = p.prog) -> None:
            sys.stderr.write(f"{prog}: error: {message} (see {prog} --help)\n")
            raise SystemExit(2)
        p.error = error


if __name__ == "__main__":
    raise SystemExit(main())
