"""Property-based fuzzing (Hypothesis) of the three ways data comes in: record files, order logs, HTTP bodies.

The property everywhere: the input is either accepted, and then every input row / id is accounted for exactly
once in the output (or, under --on-error skip, in the errors file), or it fails with a `TrendError` (CLI: exit
code 2 and one stderr line naming the row / field; HTTP: 413 or 422 naming the record); never another exception,
a traceback, a 500 or a silent drop.

Everything goes through public entry points (records readers, `label_file`, `predict_proba`, the `trendnlp` CLI,
a real server on 127.0.0.1), so the tests do not depend on how the modules are split. The "ci" profile
(tests/conftest.py) fixes the seed and bounds the examples; `pytest tests/test_fuzz.py --hypothesis-profile=long`
runs deeper.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_records
from trendnlp.cli import main
from trendnlp.data.records import read_records
from trendnlp.errors import TrendError
from trendnlp.inference.labeling import label_file
from trendnlp.model.classifier import TrendClassifier

BUDGET = settings.default.max_examples  # of the loaded profile ("ci": 40); the costlier properties take less
HISTORY = 26  # the tiny model's (conftest.HISTORY)

# ---- values a careless export produces -------------------------------------------------------------------
weird_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
weird_number = st.one_of(st.integers(-3, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                         st.just(1e308), st.booleans(), st.sampled_from(["3", "x", "", "1e400", " 2 "]), st.none())
good_units = st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=HISTORY)
any_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | weird_text,
                        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(weird_text, kids, max_size=3),
                        max_leaves=6)
dates = st.dates(dt.date(2009, 1, 1), dt.date(2012, 12, 31))


def maybe(strategy, bad, p_bad: int = 4):
    """Mostly `strategy`, sometimes one of the `bad` values (1 in p_bad)."""
    return st.integers(0, p_bad - 1).flatmap(lambda k: bad if k == 0 else strategy)


def sales_lists():
    return maybe(good_units, st.one_of(st.lists(weird_number, max_size=30), st.lists(st.floats(0, 10), min_size=27,
                                                                                       max_size=40),
                                       st.just([]), weird_number, weird_text, any_json))


@st.composite
def raw_record(draw, pid: str):
    """One record as a careless producer writes it: right most of the time, wrong in one or two fields."""
    rec = {"product_id": draw(maybe(st.just(pid), st.one_of(st.just(""), st.just("  "), st.none(), st.integers(),
                                                              st.just(pid + " "), any_json), p_bad=8)),
           "sales": draw(sales_lists())}
    optional = {
        "title": maybe(weird_text, any_json), "description": maybe(weird_text, any_json),
        "reviews": maybe(st.lists(weird_text, max_size=3), any_json),
        "cutoff": maybe(dates.map(str), st.one_of(weird_text, st.integers(), st.just("2011-06-05-x"))),
        "freq": maybe(st.sampled_from(["W", "D", "M"]), weird_text), "label": maybe(st.sampled_from(
            ["rising", "falling", "stable"]), st.one_of(weird_text, st.integers())),
        "future_sales": maybe(good_units, st.lists(weird_number, max_size=5)),
        "price": maybe(st.lists(st.one_of(st.none(), st.floats(0, 99)), max_size=HISTORY), any_json),
        "market_sales": maybe(good_units, any_json), "first_sale": maybe(dates.map(str), weird_text),
        "change": maybe(st.floats(-3, 3), st.one_of(weird_text, any_json)), "category": maybe(weird_text, any_json),
        "colour": any_json,  # a column the schema does not know
    }
    for name in draw(st.sets(st.sampled_from(sorted(optional)), max_size=6)):
        rec[name] = draw(optional[name])
    if draw(st.integers(0, 12)) == 0:
        del rec["sales"]
    return rec


records_lists = st.lists(st.integers(0, 10**6), min_size=0, max_size=8, unique=True).flatmap(
    lambda ids: st.tuples(*[raw_record(f"p{i}") for i in ids])).map(list)


def ids_of(rows: list) -> list[str]:
    return [str(r["product_id"]).strip() for r in rows]


@pytest.fixture(scope="module")
def clf(tiny_config):
    torch.manual_seed(0)
    return TrendClassifier(tiny_config).fit_feature_scaling(make_records(10, 2)).eval()


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # NaN / Infinity as Python writes
    return path


# ---- 1. record files ----------------------------------------------------------------------------------
@settings(max_examples=BUDGET)
@given(rows=records_lists)
def test_labeling_accounts_for_every_row_or_names_the_bad_one(clf, tmp_path_factory, rows):
    d = tmp_path_factory.mktemp("fuzz_label")
    inp, out, errs = _jsonl(d / "in.jsonl", rows), d / "out.csv", d / "errors.csv"
    label_file(clf, inp, out, on_error="skip", errors=errs, progress=False, resume=False)
    got = pd.read_csv(out, dtype={"product_id": str}, keep_default_na=False)
    bad = pd.read_csv(errs)
    assert len(got) + len(bad) == len(rows)  # nothing lost, nothing doubled
    bad_rows = set(bad["row"].astype(int))
    assert len(bad_rows) == len(bad)
    assert got["product_id"].tolist() == [pid for n, pid in enumerate(ids_of(rows), 1) if n not in bad_rows]
    assert np.isfinite(got[[c for c in got if c.startswith("p_")]].to_numpy(float)).all()
    try:  # the same file under on_error="raise": all of it, or a TrendError naming the first bad row
        label_file(clf, inp, d / "strict.csv", progress=False, resume=False)
    except TrendError as e:
        assert bad_rows and f"row {min(bad_rows)}" in str(e)
    else:
        assert not bad_rows and pd.read_csv(d / "strict.csv", dtype={"product_id": str},
                                            keep_default_na=False)["product_id"].tolist() == ids_of(rows)


@pytest.fixture(scope="module")
def model_dir(clf, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_model") / "model"
    clf.save_pretrained(d)
    return d


@settings(max_examples=max(5, BUDGET // 4))  # each example loads the model folder, as the CLI does
@given(rows=records_lists)
def test_cli_label_writes_every_id_or_one_line_naming_row_and_field(model_dir, tmp_path_factory, rows):
    d = tmp_path_factory.mktemp("fuzz_cli_label")
    inp, out = _jsonl(d / "in.jsonl", rows), d / "out.csv"
    rc, err = run_cli(["label", "--model", model_dir, "--input", inp, "--output", out, "--no-progress"])
    if rc == 0:
        assert pd.read_csv(out, dtype={"product_id": str}, keep_default_na=False)["product_id"].tolist() == \
            ids_of(rows)
        return
    assert rc == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert f"{inp}: row " in err[0] and "field '" in err[0], err[0]


@settings(max_examples=BUDGET)
@given(rows=records_lists)
def test_predict_proba_answers_every_record_or_raises_a_trend_error(clf, rows):
    try:
        proba = clf.predict_proba(rows)
    except TrendError as e:
        assert "row " in str(e) and "field '" in str(e)
        return
    assert proba.shape == (len(rows), 3) and np.allclose(proba.sum(1), 1.0, atol=1e-5)
    frame = clf.predict_proba(pd.DataFrame(rows), as_frame=True) if rows else None
    assert frame is None or frame.shape == (len(rows), 3)


@settings(max_examples=BUDGET)
@given(rows=records_lists)
def test_the_records_reader_takes_or_names_every_row(tmp_path_factory, rows):
    from trendnlp.data.records import ErrorReport

    path = _jsonl(tmp_path_factory.mktemp("fuzz_read") / "r.jsonl", rows)
    report = ErrorReport()
    try:
        good = read_records(path, on_error="skip", report=report, history=HISTORY)
    except TrendError as e:  # only an empty file is refused as a whole (training and evaluation need rows)
        assert not rows and str(path) in str(e)
        return
    assert len(good) + len(report) == len(rows)
    assert all(e.source == str(path) and e.row and e.field for e in report.errors)
    for rec in good:
        assert all(math.isfinite(x) and x >= 0 for x in rec["sales"]) and 1 <= len(rec["sales"]) <= HISTORY


# ---- 2. order logs ------------------------------------------------------------------------------------
moments = st.datetimes(dt.datetime(2023, 1, 1), dt.datetime(2023, 8, 1))
offsets = st.sampled_from(["", "Z", "+00:00", "+01:00", "-05:00", "+05:30"])
stamp = st.one_of(
    st.tuples(moments, offsets).map(lambda t: t[0].isoformat() + t[1]),
    moments.map(lambda t: t.strftime("%Y-%m-%d")), moments.map(lambda t: t.strftime("%d/%m/%Y %H:%M")),
    st.sampled_from(["", "yesterday", "2023-02-30", "0", "2023-13-01"]), st.none())
log_units = maybe(st.integers(0, 50), weird_number, p_bad=6)


@st.composite
def order_logs(draw):
    """(DataFrame, file suffix): order lines with odd dates and offsets, bad units, duplicates, extra columns."""
    products = draw(st.lists(maybe(st.sampled_from(["A", "B", "0042", "ß-7", "mug 🙂"]), st.one_of(
        st.just(""), st.none(), st.integers(0, 9))), min_size=1, max_size=40))
    same_zone = draw(st.booleans())
    zone = draw(offsets)
    when = [draw(st.tuples(moments, st.just(zone)).map(lambda t: t[0].isoformat() + t[1]) if same_zone else stamp)
            for _ in products]
    df = pd.DataFrame({"product_id": products, "timestamp": when, "units": [draw(log_units) for _ in products]})
    if draw(st.booleans()):
        df["price"] = [draw(maybe(st.floats(0.1, 20), weird_number)) for _ in products]
    if draw(st.booleans()):
        df["note"] = draw(weird_text)  # an unknown column
    if draw(st.booleans()) and len(df):
        df = pd.concat([df, df.sample(n=draw(st.integers(1, len(df))), replace=True, random_state=0)])  # repeats
    return df, draw(st.sampled_from([".csv", ".jsonl"]))


def run_cli(argv: list[str]) -> tuple[int, list[str]]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in argv])
    return rc, [line for line in err.getvalue().splitlines() if line.strip()]


@settings(max_examples=BUDGET)
@given(log=order_logs(), as_of=st.booleans(), skip=st.booleans())
def test_prepare_builds_valid_records_or_says_what_is_wrong_in_one_line(tmp_path_factory, log, as_of, skip):
    df, suffix = log
    d = tmp_path_factory.mktemp("fuzz_prepare")
    path = d / f"orders{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_json(path, orient="records", lines=True)
    out = d / "records.jsonl"
    argv = ["prepare", "--sales", path, "--out", out, "--history", "3", "--min-history-units", "0",
            *(["--as-of"] if as_of else ["--horizon", "1"]), *(["--price-col", "price"] if "price" in df else []),
            *(["--on-error", "skip"] if skip else [])]
    rc, err = run_cli(argv)
    errors = [line for line in err if ": error: " in line]
    if rc != 0:
        assert rc == 2 and len(errors) == 1 and not any("Traceback" in line for line in err), err
        assert ": error: unexpected " not in errors[0], errors[0]
        assert str(path) in errors[0] or "--" in errors[0], errors[0]  # names the file (or the option)
        return
    recs = read_records(out, history=3) if out.stat().st_size else []  # what prepare writes, the reader takes
    keys = [(r["product_id"], r["cutoff"]) for r in recs]
    assert len(keys) == len(set(keys))
    assert {r["product_id"] for r in recs} <= {str(p).strip() for p in df["product_id"] if p is not None}
    if as_of:
        assert len({r["cutoff"] for r in recs}) <= 1
    if skip:
        bad = pd.read_csv(d / "records.errors.csv")
        assert bad["row"].between(1, len(df) + 1).all() and bad["row"].is_unique


# ---- 3. HTTP bodies against the real server ----------------------------------------------------------
@pytest.fixture(scope="module")
def url(clf):
    from serving import running_server

    with running_server(clf, max_records=20, max_body_bytes=50_000) as u:
        yield u


json_records = records_lists.map(lambda rows: json.loads(json.dumps(rows)))  # what a JSON client can send
bodies = st.one_of(json_records.map(lambda rows: {"records": rows}),
                   st.tuples(json_records, any_json).map(lambda t: {"records": t[0], "extra": t[1]}),
                   any_json, st.lists(raw_record("x"), max_size=2))


def check_response(r: httpx.Response, body) -> dict | None:
    assert r.status_code in (200, 413, 422), (r.status_code, r.text[:300])
    payload = r.json()  # always JSON, NaN-free
    if r.status_code != 200:
        assert isinstance(payload["detail"], str) and payload["detail"]
        return None
    assert [x["product_id"] for x in payload["results"]] == ids_of(body["records"])
    return payload


@settings(max_examples=BUDGET)
@given(body=bodies)
def test_predict_answers_each_record_once_or_names_the_bad_one(url, body):
    r = httpx.post(f"{url}/v1/predict", content=json.dumps(body).encode(), timeout=60,
                   headers={"content-type": "application/json"})
    payload = check_response(r, body)
    for res in (payload or {}).get("results", []):
        assert math.isclose(sum(res["probabilities"].values()), 1.0, abs_tol=1e-5)


@settings(max_examples=max(5, BUDGET // 4))
@given(rows=json_records)
def test_explain_answers_finite_json_or_names_the_bad_record(url, rows):
    # encoded by hand, as a client that writes Infinity / NaN would (httpx's json= refuses them)
    r = httpx.post(f"{url}/v1/explain", params={"text_steps": 0}, content=json.dumps({"records": rows}).encode(),
                   headers={"content-type": "application/json"}, timeout=120)
    payload = check_response(r, {"records": rows})
    for res in (payload or {}).get("results", []):
        json.dumps(res, allow_nan=False)
        assert 0.0 <= res["shapley"]["text_share"] <= 1.0


@settings(max_examples=BUDGET)
@given(raw=st.binary(max_size=200))
def test_any_bytes_get_an_answer_and_the_server_stays_up(url, raw):
    r = httpx.post(f"{url}/v1/predict", content=raw, timeout=60, headers={"content-type": "application/json"})
    # 400: not even UTF-8 / JSON (FastAPI's own answer); 422: JSON, but not a request body
    assert r.status_code in (400, 422) and isinstance(r.json()["detail"], (str, list)), (r.status_code, r.text)
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
