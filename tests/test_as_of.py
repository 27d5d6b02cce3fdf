"""Records as of a date (`prepare --as-of`) and labeling straight from an order log (`trendnlp label --sales`).

The as-of record of a product must be the training record of the same (product, cutoff) without its future,
and nothing dated after the cutoff may change it.
"""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trendnlp.data.orderlog.prepare import prepare
from trendnlp.data.orderlog.presets import prepare_preset
from trendnlp.model.classifier import TrendClassifier

REPO = Path(__file__).resolve().parents[1]
ONLINE_RETAIL = REPO / ".." / "shared" / "data" / "online_retail" / "online_retail.parquet"
SUNDAY = dt.date(2024, 1, 7)  # week 0 ends here
FUTURE_KEYS = ("future_sales", "label", "change")  # change is derived from the future


def stamp(week: int, weekday: int = 6, hour: int = 10) -> str:
    """A timestamp in week `week` (weekday 0 = Monday ... 6 = Sunday, the period's last day)."""
    return (pd.Timestamp(SUNDAY) + pd.Timedelta(weeks=week, days=weekday - 6, hours=hour)).isoformat()


def end(week: int) -> str:
    return (SUNDAY + dt.timedelta(weeks=week)).isoformat()


def shop(n_weeks: int = 14, seed: int = 0) -> dict[str, pd.DataFrame]:
    """A random order log of 12 products over `n_weeks` weeks, with dated titles and reviews."""
    rng = np.random.default_rng(seed)
    rows, texts, reviews = [], [], []
    for p in range(12):
        start = int(rng.integers(0, n_weeks - 2))  # some products launch late
        for w in range(start, n_weeks):
            for _ in range(int(rng.integers(0, 3))):
                rows.append((f"p{p:02d}", stamp(w, int(rng.integers(0, 7))), int(rng.integers(1, 6))))
            if rng.random() < 0.3:
                texts.append((f"p{p:02d}", stamp(w, 2), f"title {p} v{w % 3}", f"desc {p} v{w % 2}"))
            if rng.random() < 0.4:
                reviews.append((f"p{p:02d}", stamp(w, int(rng.integers(0, 7))), f"review {p} week {w}"))
    return {"sales": pd.DataFrame(rows, columns=["product_id", "timestamp", "units"]),
            "texts": pd.DataFrame(texts, columns=["product_id", "timestamp", "title", "description"]),
            "reviews": pd.DataFrame(reviews, columns=["product_id", "timestamp", "text"])}


def build(tables: dict, **kw) -> list[dict]:
    return prepare(tables["sales"], texts=tables["texts"], reviews=tables["reviews"], history=5, horizon=3,
                   min_history_units=4, max_reviews=2, progress=False, **kw).records


def until(tables: dict, cutoff: str) -> dict:
    """Every table cut at the end of the cutoff's day: what a shop knew on that Sunday night."""
    last = pd.Timestamp(cutoff) + pd.Timedelta(days=1)
    return {k: df[pd.to_datetime(df["timestamp"]) < last] for k, df in tables.items()}


@pytest.mark.parametrize("series_start", ["data", "first_sale"])
def test_as_of_record_equals_training_record_without_its_future(series_start):
    tables = shop()
    training = build(tables, series_start=series_start)
    cutoffs = sorted({r["cutoff"] for r in training})
    assert len(cutoffs) >= 4
    for cutoff in cutoffs:
        expected = [{k: v for k, v in r.items() if k not in FUTURE_KEYS} for r in training if r["cutoff"] == cutoff]
        assert build(tables, as_of=cutoff, series_start=series_start) == expected
        # the same records from a log that ends on the cutoff: nothing later was used
        assert build(until(tables, cutoff), as_of="latest", series_start=series_start) == expected


def test_rows_after_the_cutoff_change_nothing():
    tables = shop()
    cutoff = end(9)
    before = build(tables, as_of=cutoff)
    later = pd.Timestamp(cutoff) + pd.Timedelta(days=1)  # Monday 00:00, the first moment after the cutoff week
    spiked = {
        "sales": pd.concat([tables["sales"], pd.DataFrame({
            "product_id": ["p00", "p05", "newcomer"], "units": [999, 999, 999],
            "timestamp": [later.isoformat(), (later + pd.Timedelta(weeks=2)).isoformat(), later.isoformat()]})]),
        "texts": pd.concat([tables["texts"], pd.DataFrame({
            "product_id": ["p00"] * 5, "timestamp": [later.isoformat()] * 5, "title": ["LEAKED"] * 5,
            "description": ["LEAKED"] * 5})]),
        "reviews": pd.concat([tables["reviews"], pd.DataFrame({
            "product_id": ["p00", "p05"], "timestamp": [later.isoformat()] * 2, "text": ["LEAKED"] * 2})]),
    }
    assert build(spiked, as_of=cutoff) == before
    assert before and all(not set(FUTURE_KEYS) & set(r) for r in before)


def test_default_is_the_last_complete_period_and_dates_round_down():
    tables = shop(n_weeks=14)
    sales = tables["sales"]
    partial = pd.concat([sales, pd.DataFrame({"product_id": ["p01"], "timestamp": [stamp(14, 2)], "units": [7]})])
    res = prepare(partial, history=5, min_history_units=1, as_of="latest", progress=False)
    assert res.cutoffs == [end(13)] and res.dropped_partial == end(14)  # the Wednesday-only week is left out
    # a date inside a week means the week before it (that week is not over yet)
    assert prepare(sales, history=5, as_of=stamp(10, 3), progress=False).cutoffs == [end(9)]
    assert prepare(sales, history=5, as_of=end(10), progress=False).cutoffs == [end(10)]
    with pytest.raises(ValueError, match="last complete period ends"):
        prepare(sales, history=5, as_of=end(20), progress=False)
    with pytest.raises(ValueError, match="expected a date"):
        prepare(sales, history=5, as_of="next tuesday", progress=False)


def test_an_early_cutoff_gets_a_shorter_history_never_padding_from_before_the_log():
    sales = pd.DataFrame({"product_id": ["a", "a", "b"], "timestamp": [stamp(0), stamp(1), stamp(3)],
                          "units": [2, 3, 4]})
    res = prepare(sales, history=26, min_history_units=1, as_of=end(1), progress=False)
    assert [(r["product_id"], r["sales"]) for r in res.records] == [("a", [2.0, 3.0])]  # b has not sold yet


def test_preset_cleaning_applies_to_as_of_records():
    raw = pd.DataFrame({
        "InvoiceNo": ["1", "C2", "3", "4", "5"], "StockCode": ["85123A", "85123A", "85123A", "POST", "22423"],
        "Description": ["MUG"] * 3 + ["POSTAGE", "CAKESTAND"], "Quantity": [6, -6, 4, 1, 2],
        "InvoiceDate": [stamp(0), stamp(0), stamp(1), stamp(1), stamp(1)], "UnitPrice": [2.5, 2.5, 2.5, 18.0, 12.75],
        "CustomerID": [1.0] * 5})
    res = prepare_preset("online-retail", raw, as_of="latest", min_history_units=1, progress=False)
    assert [(r["product_id"], r["title"], r["sales"]) for r in res.records] == [
        ("22423", "CAKESTAND", [0.0, 2.0]), ("85123A", "MUG", [6.0, 4.0])]  # no cancellation, no POST


# ---- trendnlp label --sales ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tiny_config, sample_records, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("as_of_model") / "model"
    TrendClassifier(tiny_config).fit_feature_scaling(sample_records).save_pretrained(d)
    return d


def active_products(sales: pd.DataFrame, cutoff: str, weeks: int) -> set[str]:
    """Independent count: products with at least one unit in the `weeks` weeks ending on the cutoff Sunday."""
    t = pd.to_datetime(sales["timestamp"])
    hi = pd.Timestamp(cutoff) + pd.Timedelta(days=1)
    window = sales[(t >= hi - pd.Timedelta(weeks=weeks)) & (t < hi)]
    units = window.groupby("product_id")["units"].sum()
    return set(units[units >= 1].index)


def test_label_command_labels_every_active_product_once(model_dir, tmp_path):
    tables = shop(n_weeks=40, seed=3)
    sales = tables["sales"]
    sales = pd.concat([sales, pd.DataFrame({"product_id": ["old", "future"], "units": [50, 50],
                                            "timestamp": [stamp(2), stamp(40, 1)]})])  # dead; sells after
    paths = {}
    for name, df in {**tables, "sales": sales}.items():
        paths[name] = tmp_path / f"{name}.csv"
        df.to_csv(paths[name], index=False)
    out = tmp_path / "today.csv"
    cmd = [sys.executable, "-m", "trendnlp", "label", "--model", str(model_dir), "--sales", str(paths["sales"]),
           "--texts", str(paths["texts"]), "--reviews", str(paths["reviews"]), "--output", str(out), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert f"up to cutoff {end(39)}" in done.stdout  # week 40 is partial
    got = pd.read_csv(out, dtype={"product_id": str})
    expected = active_products(sales, end(39), 26)
    assert "old" not in expected and "future" not in expected
    assert sorted(got["product_id"]) == sorted(expected)  # each exactly once
    assert (got["cutoff"] == end(39)).all()
    assert np.allclose(got[["p_rising", "p_falling", "p_stable"]].sum(axis=1), 1.0, atol=1e-5)
    # the same probabilities as the model on the as-of records
    recs = prepare(sales, texts=tables["texts"], reviews=tables["reviews"], history=26, min_history_units=1,
                   as_of="latest", progress=False).records
    probs = TrendClassifier.from_pretrained(model_dir).predict_proba(recs)
    assert [r["product_id"] for r in recs] == got["product_id"].tolist()
    assert np.allclose(probs, got[["p_rising", "p_falling", "p_stable"]].to_numpy(), atol=1e-5)


def test_label_log_validates_once_and_reports_the_records_the_model_refuses(model_dir, tmp_path):
    from trendnlp.data.record_files.io import RecordError
    from trendnlp.inference.as_of import label_log

    tables = shop(n_weeks=40, seed=3)
    out, longer = tmp_path / "today.parquet", {"texts": tables["texts"], "history": 30}  # the model reads 26
    with pytest.raises(RecordError, match=r"records as of .*: row 1 .*field 'sales': history of 30 periods"):
        label_log(model_dir, tables["sales"], out, prepare_options=longer, progress=False)
    summary = label_log(model_dir, tables["sales"], out, prepare_options=longer, on_error="skip", progress=False)
    errors, got = pd.read_csv(tmp_path / "today.errors.csv"), pd.read_parquet(out)
    assert summary["errors_written"] == len(errors) > 0 and set(errors["field"]) == {"sales"}
    assert summary["rows_written"] == len(got) == summary["products"] - len(errors)
    assert list(got.columns[:3]) == ["product_id", "cutoff", "label"] and set(got["cutoff"]) <= {end(39)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["today.errors.csv", "today.parquet"]  # no parts or lock


def test_label_log_honours_min_confidence_and_checks_the_backend(model_dir, tmp_path):
    from trendnlp.inference.as_of import label_log

    tables = shop(n_weeks=40, seed=3)
    out, opts = tmp_path / "today.csv", {"texts": tables["texts"]}
    plain = pd.read_csv(label_log(model_dir, tables["sales"], out, prepare_options=opts, progress=False)["output"])
    top = plain[["p_rising", "p_falling", "p_stable"]].max(axis=1)
    bar = float(top.median())
    label_log(model_dir, tables["sales"], out, prepare_options=opts, progress=False, min_confidence=bar)
    got = pd.read_csv(out)
    assert ((got["label"] == "uncertain") == (top < bar)).all() and (got["label"] == "uncertain").any()
    assert (got.loc[top >= bar, "label"] == plain.loc[top >= bar, "label"]).all()
    with pytest.raises(ValueError, match="backend must be"):
        label_log(model_dir, tables["sales"], out, prepare_options=opts, progress=False, backend="tensorrt")


def test_label_needs_exactly_one_input(model_dir, tmp_path):
    base = [sys.executable, "-m", "trendnlp", "label", "--model", str(model_dir), "--output", str(tmp_path / "o.csv")]
    for extra in ([], ["--input", "a.jsonl", "--sales", "b.csv"]):
        done = subprocess.run(base + extra, capture_output=True, text=True, cwd=REPO)
        assert done.returncode == 2 and "either --sales" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(not ONLINE_RETAIL.exists(), reason=f"{ONLINE_RETAIL} not present")
def test_online_retail_default_cutoff_and_active_products():
    res = prepare_preset("online-retail", ONLINE_RETAIL, as_of="latest", min_history_units=1, progress=False)
    assert res.cutoffs == ["2011-12-04"] and res.dropped_partial == "2011-12-11"
    from trendnlp.data.orderlog.presets import clean_online_retail

    clean, _ = clean_online_retail(ONLINE_RETAIL)
    sales = clean.rename(columns={"StockCode": "product_id", "InvoiceDate": "timestamp", "Quantity": "units"})
    sales["product_id"] = sales["product_id"].astype(str).str.strip()
    assert sorted(r["product_id"] for r in res.records) == sorted(active_products(sales, "2011-12-04", 26))


def test_prepare_command_as_of(tmp_path, capsys):
    from trendnlp.cli import main
    from trendnlp.data.record_files.records import read_records

    tables = shop()
    tables["sales"].to_csv(tmp_path / "orders.csv", index=False)
    out = tmp_path / "today.jsonl"
    args = ["prepare", "--sales", str(tmp_path / "orders.csv"), "--history", "5", "--min-history-units", "4",
            "--out", str(out)]
    assert main([*args, "--as-of"]) == 0  # no DATE: the last complete period
    assert "as of " + end(13) in capsys.readouterr().out
    recs = read_records(out)
    assert recs and {r["cutoff"] for r in recs} == {end(13)} and all(r["label"] is None for r in recs)
    assert main([*args, "--as-of", stamp(11, 2)]) == 0
    assert {r["cutoff"] for r in read_records(out)} == {end(10)}
