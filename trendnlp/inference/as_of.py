"""Label today's catalog straight from the order log (`trendnlp label --sales LOG`).

    order log (+ texts, reviews) --prepare(as_of=DATE)--> one record per product active in the history window,
    cut exactly as training records were --label_file--> product_id, cutoff, label, p_<label> per product

The records are built by `trendnlp.data.prepare.prepare` with `as_of` (the same windowing, text and review
lookups as training records, nothing dated after the cutoff) and labelled by the streaming batch labeler,
so a record labelled today is built and scored exactly as the training and evaluation records were.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from trendnlp.data.channels import carried_channels, require_channels
from trendnlp.data.presets import prepare_log
from trendnlp.data.io import write_records
from trendnlp.outputs import exclusive_output, rank_tag
from trendnlp.inference.labeling import _load_model, label_file

# "active" = sold at least this much in the history window; training records usually ask for more (10 units
# on Online Retail), but a catalog labeling should leave out only products that did not sell at all
ACTIVE_UNITS = 1.0


@exclusive_output(lambda a: (a["output"], "--output", rank_tag()))  # refused before the log is read
def label_log(model: Any, sales: Any, output: str | Path, *, preset: str | None = None, as_of: str = "latest",
              prepare_options: dict | None = None, progress: bool = True, **label_options: Any) -> dict:
    """Label every product active in the history window of an order log, as of one cutoff.

    Args:
        model: a saved model folder or a `TrendClassifier`.
        sales: the order log (path or DataFrame), as for `trendnlp.data.prepare.prepare`.
        output: result file (.csv / .jsonl / .parquet): product_id, cutoff, label, p_<label> per class.
        preset: dataset preset with its cleaning (e.g. "online-retail"), or None.
        as_of: "latest" (the log's last complete period) or a date; the cutoff is the last period ending on or
            before it.
        prepare_options: more `prepare` options (texts, reviews, column names, freq, min_history_units, ...).
            `history` defaults to the model's; `min_history_units` to 1 (every product that sold in the window).
        progress: show progress bars.
        **label_options: passed to `label_file` (batch_size, window, dtype, on_error, errors, text_cache).
    Returns:
        the `label_file` summary plus `cutoff`, `products` (rows labelled) and `as_of`.
    Raises:
        ValueError when no product sold in the window (nothing to label) or for bad options.

    >>> label_log("runs/demo/model", "data_samples/orders.csv", "today.csv",
    ...           prepare_options={"texts": "data_samples/products.csv"})["cutoff"]  # doctest: +SKIP
    '2023-12-24'
    """
    clf = _load_model(model, None)
    opts = {"history": clf.config.sales.history, "min_history_units": ACTIVE_UNITS, **(prepare_options or {})}
    result = prepare_log(sales, preset=preset, as_of=as_of, progress=progress, **opts)
    cutoff = result.cutoffs[0]
    if result.records:  # the model would read zeros for a channel the log does not give: never what it learnt
        require_channels(clf.config.sales, carried_channels(result.records), str(sales), reader="the model")
    if not result.records:
        raise ValueError(f"{sales}: no product sold at least {opts['min_history_units']:g} units in the "
                         f"{opts['history']} periods up to {cutoff}; nothing to label (choose another --as-of)")
    with tempfile.TemporaryDirectory(prefix="trendnlp-as-of-") as tmp:
        records = Path(tmp) / "records.parquet"
        write_records(result.records, records)
        summary = label_file(clf, records, output, resume=False, progress=progress, **label_options)
    return {**summary, "cutoff": cutoff, "products": len(result.records), "as_of": str(as_of)}
