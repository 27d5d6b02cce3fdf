"""Catalog-scale batch labeling: stream a records file through a saved model into a label table.

    input (JSONL/CSV/Parquet) --read ahead `window` rows--> validate --> the prediction core (model/predict.py:
    distinct texts of the window, sorted by token length, encoded once each in dynamically padded batches,
    scattered back to records, sales encoder + fusion head in big batches) --> part file
    OUTPUT.parts/part-{shard}-{window:06d}.{ext}
Pooled text embeddings are also kept in the core's bounded LRU cache across windows (`text_cache` texts), since a
catalog sorted by cutoff meets each product's text again a few thousand rows later.

Output columns: product_id, cutoff, label, p_<label> per class in `model.labels` order, expected_change (models
with a change head, from the same pass), then any columns returned by the `extra_columns` hook. Every input row lands exactly once in the output or in the errors
file (on_error="skip"); with on_error="raise" the first bad row stops the run with a RecordError naming
file, row and field.

Resume: parts are committed by write-to-temp + os.replace, then a per-shard manifest (rows consumed,
rows/errors written) is replaced the same way, so a kill -9 at any moment loses or duplicates nothing: a
rerun re-reads the input, recomputes only windows the manifest does not list, and overwrites any part
left behind by the killed run. Window boundaries are fixed by `window`, so a rerun cuts the same windows.

Shards: window k belongs to shard k % num_shards. Every shard reads and validates every row (duplicate
(product_id, cutoff) detection needs all earlier valid rows) but encodes only its own windows; the main
process merges all parts in window order, so the output equals the single-process one.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from trendnlp.inference.labeling_io import (ResumeMismatchError, count_rows, merge_if_complete, open_shard_state, write_json,
                                  write_table)
from trendnlp.data.record_files.io import ErrorReport, detect_format, iter_raw_rows
from trendnlp.data.record_files.records import validate_batch
from trendnlp.data.record_files.keys import KeySet
from trendnlp.outputs import check_not_input, default_errors_path, exclusive_output, rank_tag
from trendnlp.inference.labeling_args import BATCH_SIZE, TEXT_CACHE, UNCERTAIN, WINDOW, add_arguments
from trendnlp.model.load import BACKENDS, load_model
from trendnlp.model.predict import Predictor

__all__ = ["KeySet", "ResumeMismatchError", "add_arguments", "label_file", "main", "run"]

ExtraColumns = Callable[[list[dict], np.ndarray], dict[str, list]]


def _shard_tag(a: dict) -> object:
    """Which share of a sharded run this process writes (each locks its own); None for a single process."""
    if a["num_shards"] > 1:
        return a["shard_index"]
    return a["accelerator"].process_index if a["accelerator"] is not None else rank_tag()


@exclusive_output(lambda a: (a["output"], "--output", _shard_tag(a)))  # a second run on one output is refused
def label_file(model: Any, input: str | Path, output: str | Path, *, batch_size: int = BATCH_SIZE, window: int = WINDOW,
               dtype: str = "fp32", on_error: str = "raise", errors: str | Path | None = None, resume: bool = True,
               progress: bool = True, num_shards: int = 1, shard_index: int = 0,
               text_cache: int = TEXT_CACHE, extra_columns: ExtraColumns | None = None, accelerator: Any = None,
               min_confidence: float | None = None, backend: str = "torch") -> dict:
    """Label every row of a records file; streaming, resumable, optionally sharded over processes.

    Args:
        model: a saved model folder (loaded with LoRA merged) or a `TrendClassifier`.
        input: records file (.jsonl / .csv / .parquet), read in a stream.
        output: result file; its suffix (.csv / .jsonl / .parquet) picks the format.
        batch_size: distinct texts per text-encoder pass.
        window: rows read ahead; texts are deduplicated over a whole window. Part of the resume fingerprint.
        dtype: "fp32" or "bf16" (autocast; fp16 is refused on CPU).
        on_error: "raise" stops at the first bad row; "skip" writes it to `errors`.
        errors: errors file (.csv / .jsonl / .parquet); default `<output stem>.errors.csv` when skipping.
        resume: continue from `OUTPUT.parts` when present; False starts over.
        progress: show a progress bar (main process only).
        text_cache: pooled text embeddings kept across windows (bounded LRU; 0: dedup within a window only).
        num_shards, shard_index: this process's share of windows (set from the accelerator under
            `accelerate launch`).
        extra_columns: hook (records, probs (n, n_classes)) -> {name: values} appended to each part.
        accelerator: an `accelerate.Accelerator`; created automatically when launched with WORLD_SIZE > 1.
        min_confidence: label a row `uncertain` when its top probability is below this (the p_* columns stay).
        backend: "torch", or "onnx" / "onnx-int8" (the folder's model.onnx / model.int8.onnx on onnxruntime;
            write them with `trendnlp export --format onnx [--int8]`); dtype must stay fp32 for those.
    Returns:
        summary dict: output, errors, rows_read, rows_written, errors_written, windows_resumed, rows_computed,
            texts_encoded, texts_cached, seconds (wall, model loading included), rows_per_s (rows computed per
            second of the read-label-write loop), num_shards, shard_index, merged.

    >>> label_file("runs/demo/model", "catalog.parquet", "labels.csv")  # doctest: +SKIP
    {'output': 'labels.csv', 'rows_written': 20000, ...}
    """
    # ~80 lines of body kept in one function on purpose: the commit protocol (part, then manifest, per window;
    # barrier; merge) reads top to bottom as the module docstring describes it
    t0 = time.perf_counter()
    if not isinstance(input, (str, os.PathLike)):  # resuming needs a file to fingerprint and re-read
        raise TypeError(f"label_file labels a records file (.jsonl, .csv, .parquet) in a resumable stream; found a "
                        f"{type(input).__name__}: write it first (a DataFrame: df.to_parquet('catalog.parquet'), "
                        "with df.reset_index() when the product ids are its index) or use "
                        "clf.predict_proba(df, as_frame=True)")
    input, output = Path(input), Path(output)
    out_fmt = detect_format(output)
    _check_options(dtype, on_error, min_confidence, backend, batch_size, window)
    errors = default_errors_path(output) if on_error == "skip" and errors is None else errors
    errors = Path(errors) if errors is not None else None
    err_fmt = detect_format(errors) if errors is not None else None
    check_not_input(output, {"input": input}, "output")  # writing the output must never destroy the catalog
    if errors is not None:
        check_not_input(errors, {"input": input, "output": output}, "errors")
    if not input.is_file():
        raise FileNotFoundError(f"{input}: no such records file")
    if accelerator is None and num_shards == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=not torch.cuda.is_available())
    if accelerator is not None:
        num_shards, shard_index = accelerator.num_processes, accelerator.process_index
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, {num_shards}), found {shard_index}")
    barrier = accelerator.wait_for_everyone if accelerator is not None else (lambda: None)
    device = accelerator.device if accelerator is not None else None
    clf = _load_model(model, device, backend)
    labeler = Predictor(clf, batch_size=batch_size, dtype=dtype, text_cache=text_cache)

    parts = output.with_name(output.name + ".parts")
    fingerprint = {"input": str(input.resolve()), "input_size": input.stat().st_size,
                   "input_mtime_ns": input.stat().st_mtime_ns, "model": _model_ref(model, clf),
                   "options": {"window": window, "batch_size": batch_size, "dtype": dtype, "on_error": on_error,
                               "num_shards": num_shards, "output": out_fmt, "errors": err_fmt,
                               "labels": clf.labels, **({"backend": backend} if backend != "torch" else {})}}
    if min_confidence is not None:  # only when set: folders of earlier runs keep their fingerprint
        fingerprint["options"]["min_confidence"] = min_confidence
    fingerprint = json.loads(json.dumps(fingerprint))  # as stored in the manifest (tuples become lists)
    if not resume and shard_index == 0:
        shutil.rmtree(parts, ignore_errors=True)
    barrier()  # nobody writes parts before a --no-resume wipe is done
    parts.mkdir(parents=True, exist_ok=True)
    state = open_shard_state(parts, shard_index, fingerprint)
    done_before, t_loop = state["next_window"], time.perf_counter()

    total = count_rows(input) if progress and shard_index == 0 else None
    bar = tqdm(total=total, unit="rows", unit_scale=True, disable=not (progress and shard_index == 0),
               desc="labeling", smoothing=0.1)  # shows rows/s and, with a total, the ETA
    source, csv_encoded = str(input), detect_format(input) == "csv"
    rules = clf.record_rules()  # history, label rule, and the channels the model reads (a row without one is bad)
    seen, rows_read, computed = KeySet(), 0, 0
    # an empty catalog (0 bytes) is 0 records: a daily pipeline gets a header-only output, not an error
    rows = iter(()) if input.stat().st_size == 0 and detect_format(input) != "parquet" else iter_raw_rows(input)
    for k, chunk in enumerate(iter(lambda: list(itertools.islice(rows, window)), [])):  # fixed windows
        rows_read += len(chunk)
        report = ErrorReport()
        good = [rec for _, rec in validate_batch(chunk, source=source, on_error=on_error, csv_encoded=csv_encoded,
                                                 report=report, seen=seen, **rules)]
        if k % num_shards == shard_index and k >= state["next_window"]:
            probs, change = labeler(good)
            if good:
                cols = _result_columns(good, probs, clf.labels, extra_columns, min_confidence, change)
                write_table(cols, parts / f"part-{shard_index}-{k:06d}.{out_fmt}", out_fmt)
            if report:
                write_table(report.columns(), parts / f"errors-{shard_index}-{k:06d}.{err_fmt}", err_fmt)
            state.update(next_window=k + 1, rows_consumed=rows_read, rows_written=state["rows_written"] + len(good),
                         errors_written=state["errors_written"] + len(report))
            write_json(parts / f"manifest-{shard_index}.json", state)  # commit point of window k
            computed += len(chunk)
        bar.update(len(chunk))
    bar.close()
    state.update(done=True, rows_consumed=rows_read)
    write_json(parts / f"manifest-{shard_index}.json", state)

    barrier()
    states = None
    if shard_index == 0 or accelerator is None:
        states = merge_if_complete(parts, output, errors, out_fmt, err_fmt, clf.labels, num_shards, fingerprint)
    barrier()
    seconds, loop_s = time.perf_counter() - t0, time.perf_counter() - t_loop
    totals = states or [state]  # after the merge: every shard's counts; otherwise this shard's
    return {"output": str(output), "errors": str(errors) if errors else None, "rows_read": rows_read,
            "rows_written": sum(s["rows_written"] for s in totals),
            "errors_written": sum(s["errors_written"] for s in totals),
            "windows_resumed": done_before, "rows_computed": computed, "texts_encoded": labeler.texts_encoded,
            "texts_cached": labeler.texts_cached, "seconds": round(seconds, 3),
            "rows_per_s": round(computed / loop_s, 1) if loop_s > 0 else None, "num_shards": num_shards,
            "shard_index": shard_index, "merged": states is not None}


# ---------------------------------------------------------------------------------------------
# helpers: model loading, results, manifest
# ---------------------------------------------------------------------------------------------
def _check_options(dtype: str, on_error: str, min_confidence: float | None, backend: str, batch_size: int,
                   window: int) -> None:
    if dtype not in ("fp32", "bf16"):
        raise ValueError(f"dtype must be 'fp32' or 'bf16', found {dtype!r} (fp16 is not supported on CPU)")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', found {on_error!r}")
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be a probability in [0, 1], found {min_confidence}")
    if backend not in BACKENDS or (backend != "torch" and dtype != "fp32"):
        raise ValueError(f"backend must be torch, onnx or onnx-int8 (onnx ones with dtype fp32), found {backend!r} "
                         f"with dtype {dtype!r}")
    if batch_size < 1 or window < 1:
        raise ValueError(f"batch_size and window must be >= 1, found {batch_size} and {window}")


def _load_model(model: Any, device, backend: str = "torch"):
    if isinstance(model, (str, Path)):
        if backend != "torch":
            return load_model(model, backend)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return load_model(model, merge_lora=True, device=device)
    if not isinstance(model, torch.nn.Module):  # a runtime loaded elsewhere (ONNX)
        return model
    return model.to(device).eval() if device is not None else model.eval()


def _model_ref(model: Any, clf) -> dict:
    if hasattr(clf, "sessions") and not isinstance(model, (str, Path)):
        model = clf.directory  # an in-memory ONNX model: its folder's files identify it
    if isinstance(model, (str, Path)):
        files = [p for p in Path(model).rglob("*") if p.is_file()]
        return {"dir": str(Path(model).resolve()),
                "files": sorted((str(p.relative_to(model)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)}
    with torch.no_grad():  # an in-memory model: its config plus a cheap checksum of every weight
        checksum = sum(float(p.double().sum()) for p in clf.state_dict().values() if p.is_floating_point())
    return {"in_memory": True, "config": clf.config.to_dict(), "checksum": checksum}


def _result_columns(records: list[dict], probs: np.ndarray, labels: list[str], extra: ExtraColumns | None,
                    min_confidence: float | None = None, change: np.ndarray | None = None) -> dict[str, list]:
    names = [labels[i] for i in probs.argmax(axis=1)]
    if min_confidence is not None:
        names = [UNCERTAIN if p < min_confidence else n for n, p in zip(names, probs.max(axis=1))]
    cols = {"product_id": [r["product_id"] for r in records], "cutoff": [r["cutoff"] for r in records],
            "label": names}
    for j, name in enumerate(labels):
        cols[f"p_{name}"] = probs[:, j].astype(np.float64).tolist()
    if extra is not None:
        for name, values in extra(records, probs).items():
            if name in cols or len(values) != len(records):
                raise ValueError(f"extra_columns: column {name!r} clashes with a base column or has {len(values)} "
                                 f"values for {len(records)} records")
            cols[name] = list(values)
    if change is not None:
        cols["expected_change"] = change.astype(np.float64).tolist()
    return cols


# ---------------------------------------------------------------------------------------------
# command line (the `trendnlp label` subcommand reuses add_arguments / run)
# ---------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict:
    """Run `label_file` from parsed arguments and print its summary (main process only)."""
    summary = label_file(args.model, args.input, args.output, batch_size=args.batch_size, window=args.window,
                         dtype=args.dtype, on_error=args.on_error, errors=args.errors, resume=not args.no_resume,
                         progress=not args.no_progress, min_confidence=args.min_confidence,
                         backend=getattr(args, "backend", "torch"))
    if summary["shard_index"] == 0:
        print(json.dumps(summary, indent=1))
        if summary["rows_read"] == 0:
            print(f"trendnlp label: note: {args.input} holds no records; wrote a header-only {args.output}",
                  file=sys.stderr)
    return summary


def main(argv: list[str] | None = None) -> int:
    """`python -m trendnlp.inference.labeling --model DIR --input FILE --output FILE [...]`."""
    run(add_arguments(argparse.ArgumentParser(prog="trendnlp label", description=__doc__.split("\n")[0]))
        .parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
