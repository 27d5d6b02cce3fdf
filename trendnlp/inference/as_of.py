"""Label today's catalog straight from the order log (`trendnlp label --sales LOG`).

    order log (+ texts, reviews) --prepare(as_of=DATE)--> one record per product active in the history window,
    cut exactly as training records were --validate (the model's rules), once--> the prediction core
    (model/predict.py), window by window --> product_id, cutoff, label, p_<label> per product, written once

The records are built by `trendnlp.data.orderlog.prepare.prepare` with `as_of` (the same windowing, text and review
lookups as training records, nothing dated after the cutoff) and scored by the same core as `trendnlp label
--input`, so a record labelled today is built and scored exactly as the training and evaluation records were.
They go to the core in memory: no temporary records file, no second reading; the output is written once, under
one lock. (A few thousand products per cutoff: no resume or sharding, which a catalog file gets from
`label_file`.)
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from trendnlp.data.record_files.channels import carried_channels, require_channels
from trendnlp.data.record_files.io import ErrorReport, detect_format
from trendnlp.data.orderlog.presets import prepare_log
from trendnlp.data.record_files.records import validate_batch
from trendnlp.inference.labeling import _check_options, _load_model, _result_columns
from trendnlp.inference.labeling_args import BATCH_SIZE, TEXT_CACHE, WINDOW
from trendnlp.inference.labeling_io import write_table
from trendnlp.model.predict import Predictor
from trendnlp.outputs import default_errors_path, exclusive_output, rank_tag

# "active" = sold at least this much in the history window; training records usually ask for more (10 units
# on Online Retail), but a catalog labeling should leave out only products that did not sell at all
ACTIVE_UNITS = 1.0


@exclusive_output(lambda a: (a["output"], "--output", rank_tag()))  # refused before the log is read
def label_log(model: Any, sales: Any, output: str | Path, *, preset: str | None = None, as_of: str = "latest",
              prepare_options: dict | None = None, progress: bool = True, batch_size: int = BATCH_SIZE,
              window: int = WINDOW, dtype: str = "fp32", on_error: str = "raise", errors: str | Path | None = None,
              text_cache: int = TEXT_CACHE, min_confidence: float | None = None, backend: str = "torch") -> dict:
    """Label every product active in the history window of an order log, as of one cutoff.

    Args:
        model: a saved model folder or a `TrendClassifier`.
        sales: the order log (path or DataFrame), as for `trendnlp.data.orderlog.prepare.prepare`.
        output: result file (.csv / .jsonl / .parquet): product_id, cutoff, label, p_<label> per class.
        preset: dataset preset with its cleaning (e.g. "online-retail"), or None.
        as_of: "latest" (the log's last complete period) or a date; the cutoff is the last period ending on or
            before it.
        prepare_options: more `prepare` options (texts, reviews, column names, freq, min_history_units, ...).
            `history` defaults to the model's; `min_history_units` to 1 (every product that sold in the window).
        progress: show progress bars.
        batch_size, window, dtype, on_error, errors, text_cache, min_confidence, backend: as for `label_file`
            (records scored a window at a time; a record the model refuses, e.g. a longer --history than the
            model's, raises or with on_error="skip" goes to `errors`).
    Returns:
        output, errors, rows_read, rows_written, errors_written, texts_encoded, texts_cached, seconds, plus
        `cutoff`, `products` (records prepared) and `as_of`.
    Raises:
        ValueError when no product sold in the window (nothing to label) or for bad options.

    >>> label_log("runs/demo/model", "data_samples/orders.csv", "today.csv",
    ...           prepare_options={"texts": "data_samples/products.csv"})["cutoff"]  # doctest: +SKIP
    '2023-12-24'
    """
    t0 = time.perf_counter()
    output = Path(output)
    _check_options(dtype, on_error, min_confidence, backend, batch_size, window)
    errors = default_errors_path(output) if on_error == "skip" and errors is None else errors
    out_fmt, err_fmt = detect_format(output), detect_format(errors) if errors is not None else None
    clf = _load_model(model, None, backend)
    opts = {"history": clf.config.sales.history, "min_history_units": ACTIVE_UNITS, **(prepare_options or {})}
    result = prepare_log(sales, preset=preset, as_of=as_of, progress=progress, **opts)
    cutoff = result.cutoffs[0]
    if not result.records:
        raise ValueError(f"{sales}: no product sold at least {opts['min_history_units']:g} units in the "
                         f"{opts['history']} periods up to {cutoff}; nothing to label (choose another --as-of)")
    # the model would read zeros for a channel the log does not give: never what it learnt
    require_channels(clf.config.sales, carried_channels(result.records), str(sales), reader="the model")
    report = ErrorReport()
    records = [rec for _, rec in validate_batch(enumerate(result.records, start=1), on_error=on_error, report=report,
                                                source=f"{sales} (records as of {cutoff})", **clf.record_rules())]
    labeler = Predictor(clf, batch_size=batch_size, dtype=dtype, text_cache=text_cache)
    cols: dict[str, list] = {c: [] for c in ["product_id", "cutoff", "label"] + [f"p_{n}" for n in clf.labels]}
    with tqdm(total=len(records), unit="rows", disable=not progress, desc="labeling") as bar:
        for start in range(0, len(records), window):
            chunk = records[start:start + window]
            probs, change = labeler(chunk)
            for name, values in _result_columns(chunk, probs, clf.labels, None, min_confidence, change).items():
                cols.setdefault(name, []).extend(values)
            bar.update(len(chunk))
    write_table(cols, output, out_fmt)
    if errors is not None:
        write_table(report.columns(), errors, err_fmt)
    return {"output": str(output), "errors": str(errors) if errors is not None else None,
            "rows_read": len(result.records), "rows_written": len(records), "errors_written": len(report),
            "texts_encoded": labeler.texts_encoded, "texts_cached": labeler.texts_cached,
            "seconds": round(time.perf_counter() - t0, 3), "cutoff": cutoff, "products": len(result.records),
            "as_of": str(as_of)}
