"""Time-based splits: the benchmark's ranges, the one-horizon purge, and the latest-cutoffs holdout."""
import pandas as pd
import pytest

from trendnlp.data.record_files.split import ONLINE_RETAIL_SPLIT, latest_ranges, split_by_cutoff, time_holdout


def weekly(first="2011-05-29", last="2011-11-06", products="ab"):
    cutoffs = pd.date_range(first, last, freq="W-SUN").strftime("%Y-%m-%d")
    return [{"product_id": p, "cutoff": c, "freq": "W"} for c in cutoffs for p in products]


def cutoffs(part):
    return sorted({r["cutoff"] for r in part})


def test_online_retail_defaults():
    train, val, test = split_by_cutoff(weekly())
    assert (cutoffs(train)[0], cutoffs(train)[-1], len(cutoffs(train))) == ("2011-05-29", "2011-08-14", 12)
    assert cutoffs(val) == ["2011-09-11", "2011-09-18", "2011-09-25"]
    assert cutoffs(test) == ["2011-10-23", "2011-10-30", "2011-11-06"]
    purged = {"2011-08-21", "2011-08-28", "2011-09-04", "2011-10-02", "2011-10-09", "2011-10-16"}
    assert set(cutoffs(weekly())) - set(cutoffs(train + val + test)) == purged
    assert split_by_cutoff(weekly(), **ONLINE_RETAIL_SPLIT, horizon=4) == (train, val, test)


def test_two_year_file_trains_from_its_first_full_history_cutoff():
    """Online Retail II (2009-12 … 2011-12): train 2010-05-30 … 2011-08-14 by default; validation and test as
    for the one-year file, whose own train range (2011-05-29 …) the same defaults give above."""
    train, val, test = split_by_cutoff(weekly(first="2010-05-30"))
    assert (cutoffs(train)[0], cutoffs(train)[-1], len(cutoffs(train))) == ("2010-05-30", "2011-08-14", 64)
    assert split_by_cutoff(weekly())[1:] == split_by_cutoff(weekly(first="2010-05-30"))[1:] == (val, test)
    earlier = weekly(first="2010-05-23", last="2010-05-23")  # a cutoff with less than 26 weeks of history
    assert split_by_cutoff(earlier) == ([], [], [])


def test_optional_parts_and_records_order():
    train, val, test = split_by_cutoff(weekly(), train=("2011-05-29", "2011-06-05"), val=None, test=None)
    assert val == test == [] and [r["product_id"] for r in train] == ["a", "b", "a", "b"]


@pytest.mark.parametrize("kw,match", [
    ({"val": ("2011-09-04", "2011-09-25")}, r"3 W period\(s\) apart.*purge gap of at least 4"),
    ({"test": ("2011-10-16", "2011-11-06")}, "purge"),
    ({"val": ("2011-08-01", "2011-09-25")}, "overlap"),
    ({"val": ("2011-09-25", "2011-09-11")}, "ends before it starts"),
    ({"train": ("2011-10-23", "2011-11-06"), "test": ("2011-05-29", "2011-06-05")}, "time order"),
    ({"val": ("next week", "2011-09-25")}, "ISO date"),
])
def test_bad_ranges(kw, match):
    with pytest.raises(ValueError, match=match):
        split_by_cutoff(weekly(), **{**ONLINE_RETAIL_SPLIT, **kw})


def test_purge_counts_periods_of_the_given_freq():
    months = [{"product_id": "a", "cutoff": c} for c in ("2011-01-31", "2011-02-28", "2011-04-30")]
    train, val, _ = split_by_cutoff(months, train=("2011-01-31", "2011-01-31"), val=("2011-04-30", "2011-04-30"),
                                    test=None, horizon=3, freq="M")
    assert (len(train), len(val)) == (1, 1)
    with pytest.raises(ValueError, match="purge"):
        split_by_cutoff(months, train=("2011-01-31", "2011-01-31"), val=("2011-02-28", "2011-04-30"), test=None,
                        horizon=3, freq="M")


def test_records_without_cutoff_are_refused():
    with pytest.raises(ValueError, match=r"record 1 \(product_id='x'\) has no cutoff"):
        split_by_cutoff([{"product_id": "x", "sales": [1]}])


def test_time_holdout_takes_latest_cutoffs_with_purge():
    recs = weekly()  # 24 cutoffs
    train, val = time_holdout(recs, val_fraction=0.25, horizon=4)
    assert cutoffs(val) == cutoffs(recs)[-6:]
    assert cutoffs(train) == cutoffs(recs)[:-6 - 3]  # the 3 cutoffs right before val are purged
    gap = (pd.Timestamp(cutoffs(val)[0]) - pd.Timestamp(cutoffs(train)[-1])).days // 7
    assert gap == 4 and not set(cutoffs(train)) & set(cutoffs(val))


def test_time_holdout_errors():
    with pytest.raises(ValueError, match="between 0 and 1"):
        time_holdout(weekly(), val_fraction=1.0)
    with pytest.raises(ValueError, match="no training records"):
        time_holdout(weekly("2011-05-29", "2011-06-19"), val_fraction=0.2, horizon=4)
    mixed = weekly()[:2] + [{"product_id": "d", "cutoff": "2011-06-01", "freq": "D"}]
    with pytest.raises(ValueError, match="mix period lengths"):
        time_holdout(mixed)


def test_latest_ranges_count_back_from_the_newest_cutoff_and_give_the_section_6_split():
    """On the two-year file's cutoffs (2010-05-30 … 2011-11-06) the default sizes are the benchmark's; the gap is the
    three purged cutoffs between train and validation (labels known before test: refit only)."""
    r = latest_ranges(cutoffs(weekly(first="2010-05-30")))
    assert {k: r[k] for k in ("val", "test")} == {k: ONLINE_RETAIL_SPLIT[k] for k in ("val", "test")}
    assert r["train"] == ("2010-05-30", ONLINE_RETAIL_SPLIT["train"][1]) and r["gap"] == ("2011-08-21", "2011-09-04")
    shorter = latest_ranges(cutoffs(weekly(last="2011-10-02")), test_periods=2, val_periods=1, purge=2)
    assert shorter == {"train": ("2011-05-29", "2011-08-28"), "gap": ("2011-09-04", "2011-09-04"),
                       "val": ("2011-09-11", "2011-09-11"), "test": ("2011-09-25", "2011-10-02")}
    # the parts it gives pass split_by_cutoff's own purge check
    train, val, test = split_by_cutoff(weekly(), r["train"], r["val"], r["test"], horizon=4)
    assert cutoffs(test)[0] > cutoffs(val)[-1] > cutoffs(train)[-1]


def test_latest_ranges_refuses_a_log_too_short_to_split():
    with pytest.raises(ValueError, match="no training cutoff is left"):
        latest_ranges(cutoffs(weekly(last="2011-08-14")))  # 12 cutoffs: 3 + 4 + 3 + 4 > 12
    with pytest.raises(ValueError, match="test_periods must be at least 1"):
        latest_ranges(cutoffs(weekly()), test_periods=0)
