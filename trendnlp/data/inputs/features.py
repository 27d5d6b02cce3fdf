"""Per-record features: the text string fed to BERT, and the sales tensors fed to the LSTM.

Sales per period (T = history; left-padded, since the newest period must sit at the LSTM's last step):
    channel 0   scaled units (see SalesConfig.scaling)
    channel 1   observed mask (1 for a real period, 0 for padding)
    channel 2-5 sin/cos week of year, sin/cos month of the period's end date (zeros without cutoff)
    then the context channels the config feeds (trendnlp.data.record_files.channels.fed_channels: SalesConfig.price_channels,
    market_channels and `channels`), each as its registry entry encodes it; `sales_channel_names` lists them
Summary statistics (sales_stats.SUMMARY_NAMES) are computed on the raw units and concatenated to the LSTM state.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np

from trendnlp.config import SalesConfig, TextConfig
from trendnlp.data.record_files.channels import fed_channels
from trendnlp.data.inputs.sales_stats import summary_stats

N_CALENDAR = 4
N_SALES_CHANNELS = 2 + N_CALENDAR


def sales_channel_names(cfg: SalesConfig) -> list[str]:
    """Names of the per-period channels this config builds, in order (stored with the saved model).

    >>> sales_channel_names(SalesConfig(price_channels=True))[-2:]
    ['price_rel', 'price_change']
    """
    base = ["units", "observed", "sin_week", "cos_week", "sin_month", "cos_month"]
    return base + [name for ch in fed_channels(cfg) for name in ch.features]


def n_sales_channels(cfg: SalesConfig) -> int:
    """C, the channels per period of `sales_features` under this config."""
    return len(sales_channel_names(cfg))


def build_text(record: dict, cfg: TextConfig) -> str:
    """Title, description and the newest reviews as one string (empty when the record has no text).

    >>> build_text({"title": "Red mug", "description": "", "reviews": ["nice"]}, TextConfig())
    'Red mug. Reviews: nice'
    """
    parts = [p.strip() for p in (record.get("title") or "", record.get("description") or "") if p and p.strip()]
    text = ". ".join(parts)
    if cfg.include_reviews and cfg.max_reviews > 0:
        reviews = [r.strip() for r in (record.get("reviews") or [])[: cfg.max_reviews] if r and r.strip()]
        if reviews:
            text = (text + ". " if text else "") + "Reviews: " + " | ".join(reviews)
    return text


def period_ends(cutoff: str | None, n: int, freq: str) -> list[dt.date] | None:
    """End dates of the n periods ending at cutoff (oldest first)."""
    if not cutoff:
        return None
    end = dt.date.fromisoformat(cutoff)
    if freq == "W":
        return [end - dt.timedelta(weeks=n - 1 - i) for i in range(n)]
    if freq == "D":
        return [end - dt.timedelta(days=n - 1 - i) for i in range(n)]
    out = []  # monthly: month ends going back from the cutoff's month
    y, m = end.year, end.month
    for _ in range(n):
        nxt = dt.date(y + (m == 12), m % 12 + 1, 1)
        out.append(nxt - dt.timedelta(days=1))
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return out[::-1]


def calendar_features(dates: Sequence[dt.date]) -> np.ndarray:
    """(n, 4) sin/cos of week-of-year and month."""
    week = np.array([d.isocalendar()[1] for d in dates], dtype=np.float32)
    month = np.array([d.month for d in dates], dtype=np.float32)
    w, m = 2 * np.pi * (week - 1) / 52.0, 2 * np.pi * (month - 1) / 12.0
    return np.stack([np.sin(w), np.cos(w), np.sin(m), np.cos(m)], axis=1)


def scale_units(units: np.ndarray, scaling: str) -> np.ndarray:
    x = np.log1p(units)
    if scaling == "log1p_center":
        x = x - x.mean()  # per-series: shape of the curve, not its level (level goes to the summary)
    return x


def sales_features(record: dict, cfg: SalesConfig, K: int = 4, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-period channels (history, n_sales_channels(cfg)) and summary vector (len(SUMMARY_NAMES),)."""
    units = np.asarray(record["sales"], dtype=np.float64)[-cfg.history :]
    return sales_channels(record, cfg), summary_stats(units, cfg.history, K, alpha)


def sales_channels(record: dict, cfg: SalesConfig) -> np.ndarray:
    """The per-period channels (history, n_sales_channels(cfg)) float32 of one record (see the module docstring)."""
    units = np.asarray(record["sales"], dtype=np.float64)[-cfg.history :]
    n, T = len(units), cfg.history
    x = np.zeros((T, n_sales_channels(cfg)), dtype=np.float32)
    x[T - n :, 0] = scale_units(units, cfg.scaling)
    x[T - n :, 1] = 1.0
    if cfg.calendar:
        dates = period_ends(record.get("cutoff"), T, record.get("freq") or "W")
        if dates is not None:
            x[:, 2:N_SALES_CHANNELS] = calendar_features(dates)  # padded periods still have a date
    col = N_SALES_CHANNELS
    for ch in fed_channels(cfg):  # only the record's own periods: its window ends at the cutoff
        x[T - n:, col:col + ch.width] = ch.encode(record.get(ch.name), n)
        col += ch.width
    return x


def cutoff_calendar(record: dict) -> np.ndarray:
    """(4,) calendar features of the cutoff itself (zeros when unknown); used by baselines and plots."""
    c = record.get("cutoff")
    return calendar_features([dt.date.fromisoformat(c)])[0] if c else np.zeros(N_CALENDAR, dtype=np.float32)
