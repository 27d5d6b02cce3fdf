"""Dataset presets for `trendnlp prepare --preset NAME`: cleaning rules and column names of known order logs.

A preset turns one raw file into a clean sales frame (cleaning that is right for that dataset only, such
as dropping the Online Retail cancellations) plus the `prepare` arguments that fit it. Everything after
cleaning is the generic `trendnlp.data.orderlog.prepare.prepare`, so presets never fork the record-building logic.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from trendnlp.data.record_files.channels import column_options
from trendnlp.data.orderlog.prepare import PrepareResult, parse_times, prepare, read_table
from trendnlp.data.record_files.io import RecordError


@dataclass(frozen=True)
class Preset:
    """A known dataset: how to clean it and which `prepare` arguments reproduce its benchmark."""

    name: str
    help: str
    clean: Callable[[Any], tuple[pd.DataFrame, list[str]]]  # raw source -> (clean frame, notes on what was dropped)
    columns: dict[str, str]  # prepare's column arguments (product_col, time_col, units_col, *_col of channels, ...)
    defaults: dict[str, Any] = field(default_factory=dict)  # prepare options of the benchmark protocol


# ---------------------------------------------------------------------------------------------
# UCI Online Retail (id 352) and Online Retail II (id 502)
# ---------------------------------------------------------------------------------------------
# both UCI releases, first name = the name used from here on
_ONLINE_RETAIL_COLUMNS = {
    "InvoiceNo": ["InvoiceNo", "Invoice"], "StockCode": ["StockCode"], "Description": ["Description"],
    "Quantity": ["Quantity"], "InvoiceDate": ["InvoiceDate"], "UnitPrice": ["UnitPrice", "Price"],
    "CustomerID": ["CustomerID", "Customer ID"],
}


def clean_online_retail(source: Any) -> tuple[pd.DataFrame, list[str]]:
    """Apply the benchmark's cleaning to an Online Retail file or DataFrame (either UCI release's column names).

    Drops, in this order: cancellations (InvoiceNo starting with "C"), Quantity <= 0, UnitPrice <= 0, and
    StockCodes that are not products (not starting with five digits: POST, DOT, M, BANK CHARGES, ...).
    InvoiceDate is parsed once here (it is a string in the shipped Parquet file).

    Args:
        source: path (.parquet/.csv/.jsonl) or DataFrame with the Online Retail columns.
    Returns:
        (clean frame with columns InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
        CustomerID and the original row positions as index, notes saying how many rows each rule dropped)

    >>> raw = pd.DataFrame({"Invoice": ["1", "C2"], "StockCode": ["85123A", "85123A"], "Description": ["MUG"] * 2,
    ...                     "Quantity": [6, -6], "InvoiceDate": ["2010-12-01 08:26"] * 2, "Price": [2.5, 2.5],
    ...                     "Customer ID": [17850.0, 17850.0]})
    >>> len(clean_online_retail(raw)[0])
    1
    """
    optional = ("CustomerID", "Description")  # not needed for sales; Description only feeds the title
    df, src, off = read_table(source, "online-retail", _ONLINE_RETAIL_COLUMNS, optional=optional)
    n0 = len(df)
    quantity = pd.to_numeric(df["Quantity"], errors="coerce")  # non-numbers survive and fail in prepare
    price = pd.to_numeric(df["UnitPrice"], errors="coerce")
    rules = [
        ("cancellations (InvoiceNo starting with C)", df["InvoiceNo"].astype("string").str.strip().str.startswith("C")),
        ("Quantity <= 0", quantity <= 0),
        ("UnitPrice <= 0", price <= 0),
        ("non-product StockCodes (not five leading digits)",
         ~df["StockCode"].astype("string").str.strip().str.match(r"^\d{5}").fillna(False).astype(bool)),
    ]
    notes, drop = [], pd.Series(False, index=df.index)
    for what, mask in rules:
        mask = mask.fillna(False).astype(bool) & ~drop  # count each row under the first rule that drops it
        notes.append(f"cleaning: dropped {int(mask.sum()):,} rows: {what}")
        drop |= mask
    df = df[~drop.to_numpy()].copy()
    notes.append(f"cleaning: kept {len(df):,} of {n0:,} rows")
    df["InvoiceDate"] = parse_times(df["InvoiceDate"], src, off, "InvoiceDate")
    df.attrs.update(source=src, row_offset=off)  # errors in prepare still point into the original file
    return df, notes


ONLINE_RETAIL = Preset(
    name="online-retail",
    help="UCI Online Retail (I or II): weekly units per StockCode, Description as the title (docs/benchmark.md)",
    clean=clean_online_retail,
    columns={"product_col": "StockCode", "time_col": "InvoiceDate", "units_col": "Quantity",
             "price_col": "UnitPrice", "invoice_col": "InvoiceNo", "customer_col": "CustomerID",
             "title_col": "Description", "description_col": None},
    defaults={"freq": "W", "history": 26, "horizon": 4, "stride": 1, "min_history_units": 10.0},
)

PRESETS: dict[str, Preset] = {ONLINE_RETAIL.name: ONLINE_RETAIL}


def get_preset(name: str) -> Preset:
    """Look a preset up by name; `online_retail` and `online-retail` are the same."""
    key = name.strip().lower().replace("_", "-")
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    return PRESETS[key]


def prepare_preset(name: str, sales: Any, *, reviews: Any = None, progress: bool = True,
                   **options: Any) -> PrepareResult:
    """Clean a known dataset and build its records with the preset's benchmark options.

    Args:
        name: preset name, e.g. "online-retail".
        sales: the raw file (path or DataFrame) of that dataset.
        reviews: optional reviews table, as for `prepare`.
        progress: show progress on stderr.
        **options: `prepare` options that override the preset's defaults (freq, history, horizon, stride,
            min_history_units, max_reviews, series_start, rule). Column names are fixed by the preset.
    Returns:
        the PrepareResult, its notes starting with what cleaning dropped.

    >>> prepare_preset("online-retail", "online_retail.parquet",
    ...                progress=False).summary()  # doctest: +SKIP
    """
    preset = get_preset(name)
    fixed = sorted(set(options) & (set(preset.columns) | {"texts"}))
    if fixed:
        raise ValueError(f"preset {preset.name!r} fixes {fixed} (its columns and text source); drop those options "
                         "or prepare without --preset")
    clean, notes = preset.clean(sales)
    if len(clean) == 0:
        raise RecordError(clean.attrs.get("source", "<sales>"), None, "(rows)", "no rows left after cleaning")
    kwargs = {**preset.defaults, **options}
    texts = clean if preset.columns.get("title_col") in clean else None
    # an optional channel column the file lacks (an export without CustomerID) leaves that channel out
    columns = {k: v for k, v in preset.columns.items() if k not in column_options() or v in clean}
    result = prepare(clean, texts=texts, reviews=reviews, progress=progress, **columns, **kwargs)
    result.notes[:0] = notes
    return result


def prepare_log(sales: Any, *, preset: str | None = None, **options: Any) -> PrepareResult:
    """`prepare_preset(preset, sales, ...)` when a preset is named, else `prepare(sales, ...)`: one entry point
    for the command line and `trendnlp.inference.as_of`.

    Args:
        sales: the order log (path or DataFrame).
        preset: a preset name, or None for a generic log.
        **options: `prepare` options (column names and `texts` only without a preset).
    Returns:
        the PrepareResult.

    >>> prepare_log("data_samples/orders.csv", as_of="latest", progress=False).cutoffs  # doctest: +SKIP
    ['2023-12-24']
    """
    if preset:
        return prepare_preset(preset, sales, **options)
    return prepare(sales, **options)
