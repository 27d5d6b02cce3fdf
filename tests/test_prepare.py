"""`trendnlp prepare` on hand-built order logs: windows, periods, filters, errors, and proof of no look-ahead."""
import datetime as dt
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trendnlp.labels import LabelRule
from trendnlp.data.orderlog.presets import clean_online_retail, get_preset, prepare_preset
from trendnlp.data.orderlog.prepare import prepare, summarize
from trendnlp.data.record_files.records import read_records
from trendnlp.data.record_files.io import RecordError
from trendnlp.errors import TrendError

SUNDAY = dt.date(2024, 1, 7)  # first period end of every synthetic log below
ONLINE_RETAIL = Path(__file__).parents[1] / ".." / "shared" / "data" / "online_retail" / "online_retail.parquet"


def week(i: int, weekday: int = 6, hour: int = 10) -> str:
    """A timestamp inside week i (week 0 ends SUNDAY); weekday 0 = Monday ... 6 = Sunday, its last day."""
    day = SUNDAY + dt.timedelta(weeks=i, days=weekday - 6)
    return f"{day.isoformat()} {hour:02d}:00"


def log(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["product_id", "timestamp", "units"])


def run(sales, **kw):
    kw.setdefault("progress", False)
    return prepare(sales, **kw)


def test_weekly_periods_end_sunday_and_aggregate():
    # Monday and Sunday of week 0 fall in one period; the Monday after starts the next
    rows = [("a", week(0, 0), 2), ("a", week(0, 6, 23), 3), ("a", week(1, 0, 0), 7), ("a", week(2, 6), 1)]
    res = run(log(rows), history=2, horizon=1, min_history_units=0)
    assert [r["cutoff"] for r in res.records] == [(SUNDAY + dt.timedelta(weeks=1)).isoformat()]
    assert all(dt.date.fromisoformat(c).weekday() == 6 for c in res.cutoffs)
    assert res.records[0]["sales"] == [5.0, 7.0] and res.records[0]["future_sales"] == [1.0]


def test_sales_and_future_are_exact_windows():
    series = np.arange(1, 13)  # week i sells i + 1 units; missing weeks must come out as 0
    rows = [("a", week(i), int(u)) for i, u in enumerate(series) if i != 5]
    res = run(log(rows), history=4, horizon=3, min_history_units=0)
    series[5] = 0
    assert len(res.records) == 12 - 4 - 3 + 1
    for rec in res.records:
        c = (dt.date.fromisoformat(rec["cutoff"]) - SUNDAY).days // 7
        assert rec["sales"] == series[c - 3:c + 1].tolist()
        assert rec["future_sales"] == series[c + 1:c + 4].tolist()  # exactly the next `horizon` periods
        assert rec["label"] == LabelRule().label(rec["sales"], rec["future_sales"])


def test_stride_and_sorting():
    rows = [(p, week(i), 3) for i in range(10) for p in ("b", "a")]
    res = run(log(rows), history=3, horizon=2, stride=2, min_history_units=0)
    cutoffs = [r["cutoff"] for r in res.records]
    assert cutoffs == sorted(cutoffs) and len(set(cutoffs)) == 3  # weeks 2, 4, 6 (week 8 lacks 2 future weeks)
    assert [r["product_id"] for r in res.records[:2]] == ["a", "b"]


def test_partial_last_week_is_dropped():
    rows = [("a", week(i), 1) for i in range(6)] + [("a", week(6, 2), 50)]  # log stops on a Wednesday
    res = run(log(rows), history=2, horizon=1, min_history_units=0)
    assert res.dropped_partial == (SUNDAY + dt.timedelta(weeks=6)).isoformat()
    assert all(50.0 not in r["future_sales"] for r in res.records)
    assert res.records[-1]["cutoff"] == (SUNDAY + dt.timedelta(weeks=4)).isoformat()
    # a log whose last row is on the Sunday itself ends with a complete week
    res = run(log(rows[:-1] + [("a", week(6, 6, 0), 50)]), history=2, horizon=1, min_history_units=0)
    assert res.dropped_partial is None and res.records[-1]["future_sales"] == [50.0]


def test_min_history_units_and_first_sale():
    rows = [("few", week(i), 3) for i in range(3)]  # 9 units in its window: below 10
    rows += [("ten", week(i), 5) for i in (1, 2)]  # 10 units: kept
    rows += [("late", week(5), 100), ("a", week(0), 0), ("a", week(6), 0)]
    res = run(log(rows), history=3, horizon=1, min_history_units=10)
    assert {r["product_id"] for r in res.records if r["cutoff"] == res.cutoffs[0]} == {"ten"}
    # min 0: a product enters only once it has sold (never on later sales), zero-unit rows are no sale
    res = run(log(rows), history=3, horizon=1, min_history_units=0)
    late = [r["cutoff"] for r in res.records if r["product_id"] == "late"]
    assert late and min(late) == (SUNDAY + dt.timedelta(weeks=5)).isoformat()
    assert "a" not in {r["product_id"] for r in res.records}


def test_series_start_first_sale_gives_short_histories():
    rows = [("new", week(i), 4) for i in range(4, 9)] + [("old", week(i), 1) for i in range(9)]
    data = run(log(rows), history=6, horizon=1, min_history_units=0)
    first = run(log(rows), history=6, horizon=1, min_history_units=0, series_start="first_sale")
    new_data = [r["sales"] for r in data.records if r["product_id"] == "new"]
    new_first = [r["sales"] for r in first.records if r["product_id"] == "new"]
    assert new_data[0] == [0, 0, 0, 0, 4, 4] and new_first[0] == [4, 4]
    assert [len(s) for s in new_first] == [2, 3, 4]
    for rec in first.records:
        assert rec["label"] == LabelRule().label(rec["sales"], rec["future_sales"])


def test_no_look_ahead_into_sales_text_or_reviews():
    sales = log([("a", week(i), 5) for i in range(8)] + [("a", week(5, 1), 999)])
    texts = pd.DataFrame({"product_id": ["a"] * 4, "timestamp": [week(0), week(1), week(5, 1), week(5, 3)],
                          "title": ["Old mug"] * 2 + ["LEAKED mug"] * 2, "description": ["d-old"] * 2 + ["d-new"] * 2})
    reviews = pd.DataFrame({"product_id": ["a", "a", "a"], "timestamp": [week(1), week(5, 1), week(2)],
                            "text": ["first", "LEAKED review", "second"]})
    res = run(sales, texts=texts, reviews=reviews, history=3, horizon=2, min_history_units=0)
    by_cut = {(dt.date.fromisoformat(r["cutoff"]) - SUNDAY).days // 7: r for r in res.records}
    assert sorted(by_cut) == [2, 3, 4, 5]
    for c in (2, 3, 4):  # cutoffs before week 5: nothing from week 5 may show, except in future_sales
        rec = by_cut[c]
        assert 999 + 5 not in rec["sales"] and "LEAKED" not in rec["title"] + rec["description"]
        assert rec["reviews"] == ["second", "first"]  # newest first
        assert rec["title"] == "Old mug" and rec["description"] == "d-old"
    assert 999 + 5 in by_cut[4]["future_sales"] and 999 + 5 in by_cut[5]["sales"]
    assert by_cut[5]["reviews"] == ["LEAKED review", "second", "first"]
    assert by_cut[5]["title"] == "LEAKED mug" and by_cut[5]["description"] == "d-new"  # 2:2 tie -> most recent


def test_title_is_most_frequent_so_far_and_reviews_capped():
    sales = log([("a", week(i), 5) for i in range(8)])
    seen = [(0, "MUG"), (1, "MUG"), (2, "MUG "), (3, "Mug"), (4, "Mug"), (4, "Mug"), (5, "MUG")]
    texts = pd.DataFrame({"product_id": "a", "timestamp": [week(i) for i, _ in seen], "title": [t for _, t in seen]})
    reviews = pd.DataFrame({"product_id": "a", "timestamp": [week(i) for i in range(8)],
                            "text": [f"r{i}" for i in range(8)]})
    res = run(sales, texts=texts, reviews=reviews, history=3, horizon=1, min_history_units=0, max_reviews=2)
    # the stripped "MUG " counts as "MUG": 3 by week 2; "Mug" reaches 3 in week 4 and is more recent; then MUG 4
    assert [r["title"] for r in res.records] == ["MUG", "MUG", "Mug", "MUG", "MUG"]
    assert [r["reviews"] for r in res.records][:2] == [["r2", "r1"], ["r3", "r2"]]
    assert all(r["description"] == "" for r in res.records)


def test_undated_texts_and_unknown_products():
    sales = log([(p, week(i), 5) for i in range(4) for p in ("a", "b")])
    texts = pd.DataFrame({"product_id": ["a", "zzz"], "title": ["Red mug", "never sold"],
                          "description": ["ceramic", ""]})
    res = run(sales, texts=texts, history=2, horizon=1, min_history_units=0)
    assert {(r["product_id"], r["title"], r["description"]) for r in res.records} == {("a", "Red mug", "ceramic"),
                                                                                       ("b", "", "")}


def _brute_force(sales, texts, reviews, history, horizon, max_reviews, cutoff, pid):
    """The record of `pid` at `cutoff`, from rows filtered by date in plain Python (the reference).

    The tables carry a parsed `ts` column; a row is visible at a cutoff if it is dated before the next day.
    """
    end = dt.datetime.fromisoformat(cutoff) + dt.timedelta(days=1)
    s = sales[sales.product_id == pid]
    units = []
    for k in range(-history + 1, horizon + 1):  # the k-th week after the cutoff's: [end + (k-1) weeks, end + k weeks)
        lo, hi = end + dt.timedelta(weeks=k - 1), end + dt.timedelta(weeks=k)
        units.append(float(s.units[(s.ts >= lo) & (s.ts < hi)].sum()))
    t = texts[(texts.product_id == pid) & (texts.ts < end)]
    counts = Counter(t.title)
    title = max(counts, key=lambda v: (counts[v], t.ts[t.title == v].max())) if counts else ""
    r = reviews[(reviews.product_id == pid) & (reviews.ts < end)].sort_values("ts", kind="stable")
    return units[:history], units[history:], title, r.text.tolist()[::-1][:max_reviews]


def test_matches_brute_force_on_a_random_log():
    rng = np.random.default_rng(0)
    n = 600

    def stamps():  # any weekday and hour, so rows fall on both sides of every cutoff's day boundary
        return [week(int(w), int(d), int(h)) for w, d, h in
                zip(rng.integers(0, 20, n), rng.integers(0, 7, n), rng.integers(0, 24, n))]

    sales = pd.DataFrame({"product_id": rng.choice(list("abcdef"), n), "timestamp": stamps(),
                          "units": rng.integers(0, 4, n)})
    texts = sales.assign(title=rng.choice(["x", "y", "z"], n), timestamp=stamps())
    reviews = sales.sample(80, random_state=1).assign(text=[f"rev{i}" for i in range(80)])
    res = run(sales, texts=texts[["product_id", "timestamp", "title"]], reviews=reviews, history=5, horizon=2,
              min_history_units=3, max_reviews=3)
    assert len(res.records) > 50
    sales, texts, reviews = (df.assign(ts=pd.to_datetime(df.timestamp)) for df in (sales, texts, reviews))
    for rec in res.records:
        hist, fut, title, revs = _brute_force(sales, texts, reviews, 5, 2, 3, rec["cutoff"], rec["product_id"])
        assert (rec["sales"], rec["future_sales"], rec["title"], rec["reviews"]) == (hist, fut, title, revs)
        assert sum(hist) >= 3


def test_daily_and_monthly_periods():
    days = pd.date_range("2024-01-01", periods=10, freq="D")
    res = run(log([("a", d, i) for i, d in enumerate(days)]), freq="D", history=3, horizon=2, min_history_units=0)
    assert res.records[0]["cutoff"] == "2024-01-03" and res.records[0]["sales"] == [0, 1, 2]
    assert res.records[0]["freq"] == "D" and res.dropped_partial is None
    stamps = [f"2024-{m:02d}-15" for m in range(1, 8)]
    res = run(log([("a", s, m) for m, s in enumerate(stamps, 1)]), freq="M", history=2, horizon=1,
              min_history_units=0)
    assert res.dropped_partial == "2024-07-31"  # the log stops mid-July
    assert [r["cutoff"] for r in res.records] == ["2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31"]


def test_files_match_frames_and_keep_leading_zeros(tmp_path):
    df = log([("007", week(i), i + 1) for i in range(6)])
    df.to_csv(tmp_path / "s.csv", index=False)
    df.to_parquet(tmp_path / "s.parquet")
    want = run(df, history=2, horizon=1, min_history_units=0).records
    assert want[0]["product_id"] == "007"
    assert run(tmp_path / "s.csv", history=2, horizon=1, min_history_units=0).records == want
    assert run(str(tmp_path / "s.parquet"), history=2, horizon=1, min_history_units=0).records == want
    assert read_records(want) == want  # valid records of the record schema


@pytest.mark.parametrize("row,col,match", [
    (("a", "not a date", 1), "timestamp", "unparsable timestamp"),
    (("a", week(2), -3), "units", "must be >= 0"),
    (("a", week(2), "lots"), "units", "must be a number"),
    ((None, week(2), 1), "product_id", "missing product id"),
])
def test_bad_rows_name_file_line_and_column(tmp_path, row, col, match):
    rows = [("a", week(0), 1), ("a", week(1), 1), row]
    path = tmp_path / "orders.csv"
    log(rows).to_csv(path, index=False)
    with pytest.raises(RecordError, match=match) as err:
        run(path, history=1, horizon=1)
    assert (err.value.source, err.value.row, err.value.field) == (str(path), 4, col)  # line 4: header + 3 rows


def test_missing_column_and_bad_price_and_options():
    with pytest.raises(RecordError, match=r"column not found.*--units-col"):
        run(log([("a", week(0), 1)]), units_col="qty")
    df = log([("a", week(i), 1) for i in range(3)]).assign(price=[1.0, -2.0, 1.0])
    with pytest.raises(RecordError, match="price must be >= 0") as err:
        run(df, price_col="price", history=1, horizon=1)
    assert err.value.row == 2
    with pytest.raises(ValueError, match="history"):
        run(df, history=0)
    with pytest.raises(ValueError, match="needed for one cutoff"):
        run(df, history=5, horizon=1)


def test_summary_table():
    res = run(log([(p, week(i), 4) for i in range(6) for p in "ab"]), history=2, horizon=1, min_history_units=0)
    s = summarize(res.records)
    assert (s.n_records, s.n_products, s.n_cutoffs) == (8, 2, 4)
    assert s.label_counts == {"rising": 0, "falling": 0, "stable": 8}
    assert "stable" in res.summary() and "records" in str(s)


# ---------------------------------------------------------------------------------------------
# the Online Retail preset
# ---------------------------------------------------------------------------------------------
def _retail(names: dict) -> pd.DataFrame:
    rows = [  # invoice, stock code, quantity, price: one row per cleaning rule, plus two good rows
        ("536365", "85123A", 6, 2.55), ("C536379", "85123A", 1, 2.55), ("536366", "22633", 0, 1.85),
        ("536367", "22633", 3, 0.0), ("536368", "POST", 1, 18.0), ("536369", "M", 1, 1.0), ("536370", "22633", 2, 1.85),
    ]
    df = pd.DataFrame(rows, columns=["InvoiceNo", "StockCode", "Quantity", "UnitPrice"])
    df["Description"], df["InvoiceDate"], df["CustomerID"] = "MUG", "2010-12-01 08:26:00", 17850.0
    return df.rename(columns=names)


@pytest.mark.parametrize("names", [{}, {"InvoiceNo": "Invoice", "UnitPrice": "Price", "CustomerID": "Customer ID"}])
def test_online_retail_cleaning_accepts_both_uci_releases(names):
    clean, notes = clean_online_retail(_retail(names))
    assert list(clean.index) == [0, 6]  # original row positions survive for error messages
    assert clean.StockCode.tolist() == ["85123A", "22633"]
    assert [n.split(" rows")[0] for n in notes[:4]] == ["cleaning: dropped 1"] + ["cleaning: dropped 1"] * 2 + [
        "cleaning: dropped 2"]
    assert pd.api.types.is_datetime64_any_dtype(clean.InvoiceDate)


def test_preset_lookup_and_fixed_columns():
    assert get_preset("online_retail") is get_preset("online-retail")
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("amazon")
    with pytest.raises(ValueError, match="fixes"):
        prepare_preset("online-retail", _retail({}), product_col="InvoiceNo")


@pytest.fixture(scope="module")
def online_retail():
    if not ONLINE_RETAIL.exists():
        pytest.skip(f"{ONLINE_RETAIL} not present")
    start = time.perf_counter()
    res = prepare_preset("online-retail", ONLINE_RETAIL, progress=False)
    return res, time.perf_counter() - start


class TestOnlineRetailBenchmark:
    """The one-year benchmark (docs/benchmark.md): 69,969 records over 24 weekly cutoffs, 2011-05-29 … 2011-11-06."""

    def test_records_and_cutoffs(self, online_retail):
        res, seconds = online_retail
        s = summarize(res.records)
        assert (s.n_records, s.n_cutoffs, s.first_cutoff, s.last_cutoff) == (69_969, 24, "2011-05-29", "2011-11-06")
        assert res.dropped_partial == "2011-12-11" and len(res.cutoffs) == 24
        assert seconds < 60
        assert all(len(r["sales"]) == 26 and len(r["future_sales"]) == 4 and sum(r["sales"]) >= 10
                   for r in res.records)

    def test_label_shares_match_design(self, online_retail):
        counts = summarize(online_retail[0].records).label_counts
        shares = {k: round(100 * v / 69_969, 1) for k, v in counts.items()}
        assert shares == {"rising": 36.6, "falling": 32.1, "stable": 31.3}
        assert counts == {"rising": 25_576, "falling": 22_478, "stable": 21_915}


def test_price_zero_and_empty_both_mean_no_price_known(tmp_path):
    """One rule (docs/data.md): a line at 0 or with an empty price cell counts in sales but not in the period's
    average price; a period where no line has a price has a null price."""
    rows = [("a", week(0), 3), ("a", week(0), 3), ("a", week(1), 2), ("a", week(2), 4)]
    zero = log(rows).assign(price=[2.0, 0.0, 0.0, 5.0])
    empty = log(rows).assign(price=[2.0, None, None, 5.0])
    (tmp_path / "empty.csv").write_text(empty.to_csv(index=False))  # an empty CSV cell
    want = [2.0, None, 5.0]  # 2.0, not (2.0 + 0) / 2 = 1.0; week 1 has no price at all
    for source in (zero, empty, tmp_path / "empty.csv"):
        rec = run(source, price_col="price", history=3, as_of="latest", min_history_units=0).records[0]
        assert rec["sales"] == [6.0, 2.0, 4.0] and rec["price"] == want, source
    assert read_records([rec])[0]["price"] == want  # what prepare writes, the reader takes unchanged


@pytest.mark.parametrize("column, values, option", [
    ("customer", [None, None, None], "--customer-col"), ("customer", ["", " ", None], "--customer-col"),
    ("invoice", [None, None, None], "--invoice-col"), ("price", [0.0, None, 0.0], "--price-col"),
])
def test_a_channel_column_empty_on_every_row_is_refused(tmp_path, capsys, column, values, option):
    """`prepare --customer-col customer` on a column without one id used to give every record zero customers."""
    from conftest import cli_error

    path = tmp_path / "orders.csv"
    log([("a", week(i), 2) for i in range(3)]).assign(**{column: values}).to_csv(path, index=False)
    out = tmp_path / "records.jsonl"
    err = cli_error(["prepare", "--sales", path, "--out", out, option, column, "--history", "1", "--horizon", "1"],
                    capsys)
    assert f"column '{column}' ({option}, the `" in err and "is empty on every one of its 3 rows" in err
    assert f"name a column that holds them with {option}, or leave {option} out" in err and not out.exists()


def test_mixed_utc_offsets_are_read_as_utc(tmp_path, capsys):
    from trendnlp.cli import main

    days = pd.date_range("2024-01-01", periods=70, freq="D")
    stamps = [f"{d.date()}T12:00:00{'+01:00' if i % 2 else '-05:00'}" for i, d in enumerate(days)]
    stamps[-1] = "2024-03-10T23:30:00-05:00"  # Sunday evening in New York is Monday 04:30 UTC: next week
    log = tmp_path / "offsets.csv"
    pd.DataFrame({"product_id": ["A", "B"] * 35, "timestamp": stamps, "units": range(1, 71)}).to_csv(log, index=False)
    out = tmp_path / "offsets.jsonl"
    assert main(["prepare", "--sales", str(log), "--out", str(out), "--history", "4", "--horizon", "1",
                 "--min-history-units", "1"]) == 0, capsys.readouterr().err
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["product_id"] for r in recs} == {"A", "B"}
    # the last week (ending 2024-03-17) holds only that one converted row: partial, so it is left out
    assert max(r["cutoff"] for r in recs) <= "2024-03-10"
    assert "2024-03-17" in capsys.readouterr().out  # "dropped the partial last period ending 2024-03-17"


def test_prepare_refuses_an_overflowing_sum_and_bool_units():
    days = pd.date_range("2024-01-01", periods=35, freq="D")
    df = pd.DataFrame({"product_id": "mug", "timestamp": days, "units": 1e308})
    with pytest.raises(TrendError, match=r"'mug'.*2024-01-07.*infinity"):
        prepare(df, history=2, horizon=1, min_history_units=0, progress=False)
    with pytest.raises(RecordError, match="boolean"):
        prepare(df.assign(units=True), history=2, horizon=1, min_history_units=0, progress=False)


def test_prepare_skip_accounts_for_every_input_row():
    days = pd.date_range("2024-01-01", periods=120, freq="D")
    df = pd.DataFrame({"product_id": ["a", "b"] * 60, "timestamp": days.astype(str), "units": 3.0}).astype(object)
    df.loc[[4, 9], "units"] = [-1, "x"]
    df.loc[20, "timestamp"] = "never"
    clean = df.drop(index=[4, 9, 20])
    result = prepare(df, history=4, horizon=1, min_history_units=0, progress=False, on_error="skip")
    assert [(e.row, e.field) for e in result.errors.errors] == [(5, "units"), (10, "units"), (21, "timestamp")]
    expected = prepare(clean.reset_index(drop=True), history=4, horizon=1, min_history_units=0, progress=False)
    assert result.records == expected.records
