"""The product record (docs/data.md), declared once: every field's type, whether it is required, and its meaning.

From `record_schema()` (the channels' rows come from the registry, trendnlp.data.record_files.channels) derive:
    record_model()        the pydantic v2 model of one record: serve's request bodies (422 naming index and field)
    arrow_features()      the Arrow / `datasets` Features of normalised records (record files, the Arrow cache)
    record_fields()       the columns of written record files, in order
    field_table()         the Markdown field table of docs/data.md (tests/test_schema.py checks the page)
The readers' rules (trendnlp.data.record_files.records.validate_record) check the same fields row by row with messages
naming file, row and field; a Parquet batch is checked by its columns first (data.columns), the rows sure to
pass taken as they are and the others sent through those rules.

Kinds: "str", "date" (ISO), "float", "list[str]", "list[float]" (finite, >= 0), "list[float?]" (nulls allowed),
"freq", "label".

Each reads the registry when called, so a channel registered after import (by a test or a plug-in) is in all of
them.

>>> record_schema()["sales"][:2]
('list[float]', True)
"""
from __future__ import annotations

from trendnlp.data.record_files.channels import context_channels
from trendnlp.labels import LABELS

FREQS = ("W", "D", "M")
PERIOD_CODES = {"W": "W-SUN", "D": "D", "M": "M"}  # pandas period of each freq: weeks end on Sunday (Online Retail)


def record_schema() -> dict[str, tuple[str, bool, str]]:
    """field -> (kind, required, meaning), the context channels read off the registry as it is now (a channel
    registered after import, e.g. by a test or a plug-in, is in it)."""
    return {
        "product_id": ("str", True, "unique per (product, cutoff); errors name it"),
        "title": ("str", False, "short product name"),
        "description": ("str", False, "longer product text"),
        "reviews": ("list[str]", False, "reviews written on or before cutoff, newest first"),
        "sales": ("list[float]", True, "units per period, oldest to newest; 1..history periods"),
        "cutoff": ("date", False, "end of the last sales period (recommended: drives calendar features)"),
        "freq": ("freq", False, "period length: W (default), D or M"),
        "label": ("label", False, "rising / falling / stable (for training and evaluation)"),
        "future_sales": ("list[float]", False, "the next periods' units (training and evaluation)"),
        # the context channels, one row per registry entry, covering the same periods as sales
        **{c.name: ("list[float?]" if c.nullable else "list[float]", False, c.help) for c in context_channels()},
        "first_sale": ("date", False, "date of the product's first sale (at or before cutoff)"),
        "category": ("str", False, "product group (carried through to the output)"),
        "change": ("float", False, "derived by the label rule, never read as input"),
    }


def record_fields() -> tuple[str, ...]:
    """The record's fields in declaration order: the columns of written record files."""
    return tuple(record_schema())


def list_fields() -> tuple[str, ...]:
    """The fields holding a list (JSON-encoded in CSV files)."""
    return tuple(name for name, (kind, _, _) in record_schema().items() if kind.startswith("list"))


def arrow_features(**extra):
    """`datasets.Features` of normalised records (dates and names as strings, number lists as float64),
    after the `extra` columns, e.g. arrow_features(text_code=Value("int32"))."""
    from datasets import Features, Sequence, Value

    arrow = {"str": Value("string"), "date": Value("string"), "freq": Value("string"), "label": Value("string"),
             "float": Value("float64"), "list[str]": Sequence(Value("string")),
             "list[float]": Sequence(Value("float64")), "list[float?]": Sequence(Value("float64"))}
    return Features({**extra, **{name: arrow[kind] for name, (kind, _, _) in record_schema().items()}})


def record_model():
    """The pydantic model of one record (unknown fields are refused); serve's request bodies use it.

    >>> record_model().model_validate({"product_id": 7, "sales": [1, 2]}).sales
    [1.0, 2.0]
    """
    import datetime as dt
    from typing import Annotated, Literal, Optional

    from pydantic import ConfigDict, Field, create_model

    units = Annotated[float, Field(ge=0, allow_inf_nan=False)]
    types = {"str": str, "date": dt.date, "float": float, "list[str]": list[str], "list[float]": list[units],
             "list[float?]": list[Optional[units]], "freq": Literal[FREQS], "label": Literal[tuple(LABELS)]}
    fields = {}
    for name, (kind, required, help_) in record_schema().items():
        tp = types[kind]
        if name == "sales":
            tp = Annotated[tp, Field(min_length=1)]
        elif name == "product_id":
            tp = str | int  # numeric ids are read as text, as the file readers do
        fields[name] = (tp, Field(..., description=help_)) if required else (
            Optional[tp], Field(None, description=help_))
    return create_model("ProductRecord", __config__=ConfigDict(extra="forbid"), **fields)


_KIND_TEXT = {"str": "str", "date": "ISO date", "float": "float", "list[str]": "list[str] (CSV: JSON-encoded list)",
              "list[float]": "list[float] (finite, >= 0)", "list[float?]": "list[float or null]",
              "freq": "`W` / `D` / `M`", "label": " / ".join(f"`{x}`" for x in LABELS)}


def field_table() -> str:
    """The record's fields as a Markdown table (docs/data.md shows it between its schema markers).

    >>> field_table().splitlines()[0]
    '| field | type | required | meaning |'
    """
    rows = ["| field | type | required | meaning |", "|---|---|---|---|"]
    rows += [f"| `{name}` | {_KIND_TEXT[kind]} | {'yes' if required else 'no'} | {help_} |"
             for name, (kind, required, help_) in record_schema().items()]
    return "\n".join(rows)
