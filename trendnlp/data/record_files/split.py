"""Time-based splits of product records by cutoff date, with a purge of one horizon between parts.

A record's label looks `horizon` periods past its cutoff. If a validation cutoff came less than `horizon`
periods after a training cutoff, the training label would be computed from sales that the validation
record also predicts; the purge (a gap of at least `horizon` periods) keeps the parts' futures apart.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from trendnlp.data.record_files.schema import FREQS, PERIOD_CODES

Range = tuple[str, str]

# the Online Retail benchmark's cutoff ranges (inclusive; docs/benchmark.md); each gap is exactly one horizon (4 weeks).
# Train starts at the two-year file's first cutoff with 26 weeks of history; the one-year file (second year only)
# has no cutoff before 2011-05-29, so the same range gives it its own protocol (train 2011-05-29 … 2011-08-14).
ONLINE_RETAIL_SPLIT: dict[str, Range] = {
    "train": ("2010-05-30", "2011-08-14"),
    "val": ("2011-09-11", "2011-09-25"),
    "test": ("2011-10-23", "2011-11-06"),
}


def _ordinal(date: str, freq: str, what: str) -> int:
    import pandas as pd  # here, not at the top: `trendnlp benchmark --help` imports this module for the dates

    try:
        return pd.Period(pd.Timestamp(date), freq=PERIOD_CODES[freq]).ordinal
    except (ValueError, TypeError):
        raise ValueError(f"{what}: expected an ISO date like 2011-05-29, found {date!r}") from None


def _cutoffs(records: Sequence[dict]) -> list[str]:
    out = []
    for i, r in enumerate(records, start=1):
        c = r.get("cutoff")
        if not c:
            raise ValueError(f"record {i} (product_id={r.get('product_id')!r}) has no cutoff; a time-based split "
                             "needs every record's cutoff date")
        out.append(str(c)[:10])
    return out


def split_by_cutoff(records: Sequence[dict], train: Range = ONLINE_RETAIL_SPLIT["train"],
                    val: Range | None = ONLINE_RETAIL_SPLIT["val"], test: Range | None = ONLINE_RETAIL_SPLIT["test"],
                    *, horizon: int = 4, freq: str = "W") -> tuple[list[dict], list[dict], list[dict]]:
    """Split records into train / validation / test by inclusive cutoff date ranges.

    Args:
        records: record dicts with an ISO `cutoff`.
        train, val, test: (first, last) cutoff dates, inclusive; val or test may be None (empty part).
            Defaults are the Online Retail benchmark's ranges.
        horizon: periods the labels look ahead; consecutive parts must be at least this many periods apart.
        freq: period length of the cutoffs ("W", "D" or "M"), used to count the gap in periods.
    Returns:
        (train, val, test) lists; records whose cutoff falls in no range (the purged gaps) are left out.
    Raises:
        ValueError if a range is reversed, the parts are not in time order, they overlap, or a gap is
        shorter than `horizon` periods.

    >>> recs = [{"product_id": "a", "cutoff": c} for c in ("2011-05-29", "2011-08-21", "2011-09-11")]
    >>> [len(part) for part in split_by_cutoff(recs)]
    [1, 1, 0]
    """
    if freq not in FREQS:
        raise ValueError(f"freq must be one of {list(FREQS)}, found {freq!r}")
    parts = [(name, rng) for name, rng in (("train", train), ("val", val), ("test", test)) if rng is not None]
    bounds = {}
    for name, (first, last) in parts:
        lo, hi = _ordinal(first, freq, f"{name} start"), _ordinal(last, freq, f"{name} end")
        if lo > hi:
            raise ValueError(f"{name} range {first} … {last} ends before it starts")
        bounds[name] = (lo, hi)
    for (a, (a_first, a_last)), (b, (b_first, _)) in zip(parts, parts[1:]):
        gap = bounds[b][0] - bounds[a][1]
        if gap <= 0:
            raise ValueError(f"{a} ({a_first} … {a_last}) and {b} (from {b_first}) overlap or are out of time "
                             f"order; {b} must start after {a} ends")
        if gap < horizon:
            raise ValueError(f"{a} ends {a_last} and {b} starts {b_first}: {gap} {freq} period(s) apart, but labels "
                             f"look {horizon} periods ahead; leave a purge gap of at least {horizon} periods "
                             f"(start {b} at {a_last} + {horizon} periods or later)")
    out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for rec, cutoff in zip(records, _cutoffs(records)):
        o = _ordinal(cutoff, freq, f"cutoff of product {rec.get('product_id')!r}")
        for name, (lo, hi) in bounds.items():
            if lo <= o <= hi:
                out[name].append(rec)
                break
    return out["train"], out["val"], out["test"]


def latest_ranges(cutoffs: Sequence[str], test_periods: int = 3, val_periods: int = 3, purge: int = 4,
                  freq: str = "W") -> dict[str, Range]:
    """Cutoff ranges counted back from the newest labelled cutoff, with the benchmark's gaps.

    test = the newest `test_periods` cutoffs; validation = the `val_periods` before them, ending `purge` periods
    before the first test cutoff; train = every cutoff up to `purge` periods before the first validation
    cutoff; `gap` = the purged cutoffs between train and validation (labels known before the first test
    cutoff, so a refit may add them). Nothing reaches test from the future of train or validation.

    Args:
        cutoffs: the cutoff dates of the labelled records (any order, repeats allowed).
        test_periods, val_periods: periods in the test and validation parts (>= 1 each).
        purge: periods between parts (at least the label rule's F: a label looks that far ahead).
        freq: period length of the cutoffs.
    Returns:
        {"train", "gap", "val", "test"}: (first, last) ISO dates, inclusive; `gap` is None when purge <= 1.
    Raises:
        ValueError when no training cutoff is left.

    >>> cs = [f"2011-{m:02d}-{d:02d}" for m, d in [(5, 29), (6, 5), (8, 14), (9, 11), (9, 25), (10, 23), (11, 6)]]
    >>> latest_ranges(cs)
    {'train': ('2011-05-29', '2011-08-14'), 'gap': ('2011-08-21', '2011-09-04'), 'val': ('2011-09-11', '2011-09-25'), 'test': ('2011-10-23', '2011-11-06')}
    """
    import pandas as pd

    for name, value in (("test_periods", test_periods), ("val_periods", val_periods)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, found {value}")
    if purge < 0:
        raise ValueError(f"purge must be >= 0 periods, found {purge}")
    if not cutoffs:
        raise ValueError("no labelled records to split")
    code = PERIOD_CODES[freq]
    periods = sorted({pd.Period(pd.Timestamp(c), freq=code) for c in cutoffs})
    first, last = periods[0], periods[-1]
    test_first = last - (test_periods - 1)
    val_last = test_first - purge
    val_first = val_last - (val_periods - 1)
    train_last = val_first - purge

    def day(p) -> str:  # the cutoff date of a period: its end
        return p.end_time.strftime("%Y-%m-%d")

    if train_last < first:
        raise ValueError(f"the labelled cutoffs run {day(first)} … {day(last)} ({len(periods)} periods): after "
                         f"{test_periods} test and {val_periods} validation periods with {purge}-period purges no "
                         "training cutoff is left; give a longer order log or fewer --test-periods / --val-periods")
    return {"train": (day(first), day(train_last)),
            "gap": (day(train_last + 1), day(val_first - 1)) if purge > 1 else None,
            "val": (day(val_first), day(val_last)), "test": (day(test_first), day(last))}


def time_holdout(records: Sequence[dict], val_fraction: float = 0.2, horizon: int = 4,
                 freq: str | None = None) -> tuple[list[dict], list[dict]]:
    """Hold out the latest cutoffs for validation, purging `horizon` periods before them from training.

    Used when no validation file is given. The share counts distinct cutoffs, not records, so that one
    cutoff never lands on both sides.

    Args:
        records: record dicts with an ISO `cutoff`.
        val_fraction: share of distinct cutoffs (the latest ones) for validation, in (0, 1); at least one.
        horizon: purge length in periods.
        freq: period length; None takes the records' own `freq` (default "W").
    Returns:
        (train, val) lists.
    Raises:
        ValueError if the fraction is out of range, records mix frequencies, or nothing is left to train on.

    >>> import pandas as pd
    >>> recs = [{"product_id": "a", "cutoff": d, "freq": "W"} for d in pd.date_range("2011-01-02", periods=10,
    ...         freq="W-SUN").strftime("%Y-%m-%d")]
    >>> [len(part) for part in time_holdout(recs, 0.2, horizon=4)]
    [5, 2]
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), found {val_fraction}")
    if freq is None:
        found = {r.get("freq") or "W" for r in records}
        if len(found) > 1:
            raise ValueError(f"records mix period lengths {sorted(found)}; split each frequency separately")
        freq = found.pop() if found else "W"
    cutoffs = _cutoffs(records)
    ordinals = [_ordinal(c, freq, "cutoff") for c in cutoffs]
    distinct = sorted(set(ordinals))
    n_val = max(1, round(val_fraction * len(distinct)))
    first_val = distinct[-n_val]
    train = [r for r, o in zip(records, ordinals) if o <= first_val - horizon]
    val = [r for r, o in zip(records, ordinals) if o >= first_val]
    if not train:
        raise ValueError(f"{len(distinct)} distinct cutoffs: after holding out the latest {n_val} and purging "
                         f"{horizon} periods before them, no training records remain; give a validation file or "
                         "more cutoffs")
    return train, val


def by_product(records: Sequence[dict]) -> list[dict]:
    """Records sorted by (product, cutoff): the order of the written validation / test files.

    >>> [r["product_id"] for r in by_product([{"product_id": "b", "cutoff": "2011-01-02"},
    ...                                       {"product_id": "a", "cutoff": "2011-01-09"}])]
    ['a', 'b']
    """
    return sorted(records, key=lambda r: (r["product_id"], r.get("cutoff") or ""))


def write_splits(parts: dict[str, list[dict]], data_dir: Path) -> dict[str, str]:
    """Write each part to data_dir/{name}.parquet; validation and test sorted by (product, cutoff).

    Evaluation batches follow file order, so sorting by product puts each product's cutoffs in one batch
    and its text is encoded once per batch instead of once per record.
    """
    from trendnlp.data.record_files.io import write_records

    paths = {}
    for name, recs in parts.items():
        if name != "train":
            recs = by_product(recs)
        paths[name] = str(data_dir / f"{name}.parquet")
        write_records(recs, paths[name])
    return paths
