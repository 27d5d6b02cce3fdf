"""The record's channels (docs/data.md): per-period sequences aligned with `sales`, each declared once here.

One `Channel` entry says everything the package needs to know about a channel:
    record field   the record's field holding the sequence (validated, stored in Arrow, served over HTTP)
    build          how `prepare` builds it from the order log, per (product, period), at or before the cutoff:
                     sum       the column's numbers summed over the product's lines (an empty cell adds 0; the
                               `sales` channel is the units column summed)
                     mean      units-weighted mean of a column (price) over the lines with a value (0 or empty:
                               none known); None where no line has one
                     distinct  distinct non-null values of a column among the product's rows (invoices, customers)
                     count     rows with a non-null value in the column
                     total     another channel summed over every product (the shop's units)
                   Only `distinct` counts distinct values; `sum` and `mean` read the column as numbers.
    column         the `prepare` option naming its log column (`price_col` -> `--price-col`); None: none needed
    features       the sales encoder's per-period inputs it adds, and `encode`, which computes them
Everything else (prepare's windowing for training and as-of records, the record validator, the Arrow
features, the encoder's input width, the saved `config.json`, ONNX shapes, serve's request schema, explain's
baselines and the baselines' feature matrix) loops over `CHANNELS`. Adding "returns per week" is one entry.

>>> [c.name for c in CHANNELS.values()][:3]
['sales', 'price', 'market_sales']
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

BUILDS = ("sum", "mean", "distinct", "count", "total")


def centred_log1p(values: Sequence[float] | None, n: int) -> np.ndarray:
    """(n, 1) log1p of a count per period minus its mean over the record's periods (0 where absent).

    The level is left out on purpose: the channel says how the count moved, the summary says how big it is.

    >>> centred_log1p([0.0, np.e - 1], 3).round(2).ravel().tolist()
    [0.0, -0.5, 0.5]
    """
    out = np.zeros((n, 1), dtype=np.float32)
    if values is not None and len(values):
        m = np.log1p(np.asarray(values, dtype=np.float64)[-n:])
        out[n - len(m):, 0] = m - m.mean()
    return out


def price_features(price: Sequence[float | None] | None, n: int) -> np.ndarray:
    """(n, 2) price channels: log(price / median observed price) and log price change, with the last known
    price carried forward over periods without sales; 0 before the first known price or without prices.

    >>> price_features([2.0, None, 4.0], 3).astype(float).round(3).tolist()
    [[-0.405, 0.0], [-0.405, 0.0], [0.288, 0.693]]
    """
    out = np.zeros((n, 2), dtype=np.float32)
    if price is None:
        return out
    p = np.array([np.nan if v is None else float(v) for v in price][-n:], dtype=np.float64)
    known = ~np.isnan(p) & (np.nan_to_num(p) > 0)
    if not known.any():
        return out
    idx = np.maximum.accumulate(np.where(known, np.arange(len(p)), -1))  # last known period at or before t
    logp = np.where(idx >= 0, np.log(np.where(known, p, 1.0))[np.maximum(idx, 0)], np.nan)
    rel = logp - np.log(np.median(p[known]))
    change = np.diff(logp, prepend=np.nan)
    out[n - len(p):, 0] = np.nan_to_num(rel)
    out[n - len(p):, 1] = np.nan_to_num(change)
    return out


@dataclass(frozen=True)
class Channel:
    """One per-period sequence of the record (see the module docstring)."""

    name: str  # the record field
    help: str  # one line for the docs table and serve's schema
    build: str  # how prepare builds it: one of BUILDS
    column: str | None = None  # prepare's option naming the log column ("price_col"); None: no column of its own
    of: str | None = None  # build="total": the channel summed over every product
    nullable: bool = False  # periods may be None (price: nothing sold)
    digits: int | None = None  # stored values rounded to this many decimals (None: as built)
    features: tuple[str, ...] = ()  # encoder inputs per period, in order; () for `sales` (features.py owns it)
    encode: Callable[[Sequence | None, int], np.ndarray] | None = None  # (values, n) -> (n, len(features))
    option: str | None = None  # the legacy SalesConfig switch that feeds it (price_channels), else in sales.channels

    @property
    def width(self) -> int:
        """Per-period encoder inputs this channel adds when fed."""
        return len(self.features)

    @property
    def cli_flag(self) -> str | None:
        """`--price-col` for column="price_col"."""
        return None if self.column is None else "--" + self.column.replace("_", "-")


def _declare(*channels: Channel) -> dict[str, Channel]:
    names = {c.name for c in channels}
    for c in channels:
        assert c.build in BUILDS, c
        assert (c.encode is None) == (not c.features), c
        # every build but a shop total reads a log column of its own; a total sums a declared channel
        assert (c.of in names and c.column is None) if c.build == "total" else (c.column and c.of is None), c
    return {c.name: c for c in channels}


CHANNELS: dict[str, Channel] = _declare(
    Channel("sales", "units per period, oldest to newest; 1..history periods", build="sum", column="units_col"),
    Channel("price", "average unit price per sales period (null where nothing sold or no price is known; a 0 "
            "reads as null)", build="mean",
            column="price_col", nullable=True, digits=4, features=("price_rel", "price_change"),
            encode=price_features, option="price_channels"),
    Channel("market_sales", "the whole shop's units over the same periods as sales", build="total", of="sales",
            features=("market",), encode=centred_log1p, option="market_channels"),
    Channel("orders", "distinct orders (invoices) per sales period that contain the product", build="distinct",
            column="invoice_col", features=("orders",), encode=centred_log1p),
    Channel("customers", "distinct customers per sales period who bought the product (rows without a customer "
            "id not counted)", build="distinct", column="customer_col", features=("customers",),
            encode=centred_log1p),
)


def context_channels() -> list[Channel]:
    """Every channel but `sales`, in declaration order (the order of the encoder's inputs)."""
    return [c for c in CHANNELS.values() if c.name != "sales"]


def column_options() -> list[str]:
    """prepare's keyword options that name a channel's log column, besides `units_col` (price_col, ...)."""
    return [c.column for c in context_channels() if c.column]


def fed_channels(sales_config) -> list[Channel]:
    """The context channels a sales config feeds to the encoder, in declaration order.

    A channel is fed when its legacy switch (`price_channels`, `market_channels`) is on or its name is in
    `sales.channels`; an unknown name there is an error naming the known ones.

    >>> from trendnlp.config import SalesConfig
    >>> [c.name for c in fed_channels(SalesConfig(market_channels=True, channels=["customers"]))]
    ['market_sales', 'customers']
    """
    wanted = set(getattr(sales_config, "channels", None) or ())
    known = {c.name for c in context_channels()}
    unknown = sorted(wanted - known)
    if unknown:
        from trendnlp.errors import ConfigError

        raise ConfigError(f"config: sales.channels names unknown channel(s) {unknown}; known: {sorted(known)}")
    return [c for c in context_channels()
            if c.name in wanted or (c.option is not None and getattr(sales_config, c.option, False))]


def carried_channels(records: Sequence[dict]) -> set[str]:
    """The context channels that every record carries (a list, not null).

    >>> sorted(carried_channels([{"orders": [1.0]}, {"orders": [0.0], "customers": [1.0]}]))
    ['orders']
    """
    return {c.name for c in context_channels() if records and all(r.get(c.name) is not None for r in records)}


def require_channels(sales_config, available: set[str], source: str, reader: str = "the config") -> None:
    """Refuse to train or label on a channel that the config feeds but the input does not carry (the model would
    read zeros there): one error naming the channel, the option that builds it and the setting that drops it.

    Args:
        sales_config: the SalesConfig whose `fed_channels` are needed.
        available: names of the channels the input carries (`carried_channels`, or the columns a log was given).
        source: the input, for the message (a file name).
        reader: who feeds the channel: "the config" (training: the fix may drop it) or "the model" (labeling).
    Raises:
        ConfigError for the first channel fed but not available.

    >>> from trendnlp.config import SalesConfig
    >>> require_channels(SalesConfig(channels=["orders", "customers"]), {"orders"}, "log.csv")
    Traceback (most recent call last):
    trendnlp.errors.ConfigError: log.csv: the config feeds the `customers` channel (distinct customers per sales \
period who bought the product (rows without a customer id not counted)), but the input does not carry it: name the \
log's column with --customer-col COLUMN, or drop the channel with --set 'sales.channels=[orders]'
    """
    for ch in fed_channels(sales_config):
        if ch.name in available:
            continue
        from trendnlp.errors import ConfigError

        give = f"name the log's column with {ch.cli_flag} COLUMN" if ch.cli_flag else (
            f"give records that carry `{ch.name}` (prepare them from the order log)")
        drop = f", or drop the channel with {drop_setting(sales_config, ch)}" if reader == "the config" else ""
        raise ConfigError(f"{source}: {reader} feeds the `{ch.name}` channel ({ch.help}), but the input does not "
                          f"carry it: {give}{drop}")


def drop_setting(sales_config, ch: Channel) -> str:
    """The `--set` that stops feeding `ch`: its name left out of sales.channels, or its legacy switch off.

    >>> from trendnlp.config import SalesConfig
    >>> drop_setting(SalesConfig(channels=["orders", "customers"]), CHANNELS["orders"])
    "--set 'sales.channels=[customers]'"
    """
    if ch.name in (getattr(sales_config, "channels", None) or ()):
        rest = ",".join(n for n in sales_config.channels if n != ch.name)
        return f"--set 'sales.channels=[{rest}]'"
    return f"--set sales.{ch.option}=false"


def required_channels(sales_config) -> dict[str, str]:
    """{channel: why a record must carry it} for each channel the model's network reads (`fed_channels`), for the
    record validator: a record without one (the field absent or null as a whole) is refused, never read as zeros.
    A null *inside* a channel's history is not a lack: it is read as the registry says (price: no price known).

    >>> from trendnlp.config import SalesConfig
    >>> print(required_channels(SalesConfig(channels=["orders"]))["orders"])  # doctest: +ELLIPSIS
    missing, but the model reads the `orders` channel (...); give the record its `orders` history (...), or retrain the model without it (--set 'sales.channels=[]')
    """
    if not getattr(sales_config, "enabled", True):
        return {}
    out = {}
    for ch in fed_channels(sales_config):
        built = f"; prepare builds it with {ch.cli_flag} COLUMN" if ch.cli_flag else ""
        out[ch.name] = (f"missing, but the model reads the `{ch.name}` channel ({ch.help}); give the record its "
                        f"`{ch.name}` history (one value per sales period{built}), or retrain the model without it "
                        f"({drop_setting(sales_config, ch)})")
    return out
