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
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from conftest import make_records
from trendnlp.cli import main
from trendnlp.data.record_files.io import write_records
from trendnlp.data.record_files.records import read_records
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
    from trendnlp.data.record_files.io import ErrorReport

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


def check_response(r: httpx.Response, body, url: str) -> dict | None:
    assert r.status_code in (200, 413, 422), (r.status_code, r.text[:300])
    payload = r.json()  # always JSON, NaN-free
    if r.status_code != 200:
        assert isinstance(payload["detail"], str) and payload["detail"]
        if r.status_code == 422:
            check_named(payload, body, url)
        return None
    assert [x["product_id"] for x in payload["results"]] == ids_of(body["records"])
    return payload


def check_named(payload: dict, body, url: str) -> None:
    """A 422 names the field (in `errors[0]` and in `detail`); for a body of records, also the index of the bad
    record: one that holds that field (or lacks a required one) and is refused on its own too (unless its fault
    is a duplicate of another record's id)."""
    first = payload["errors"][0]
    assert first["field"] and f"field '{first['field']}'" in payload["detail"], payload
    rows = body.get("records") if isinstance(body, dict) and list(body) == ["records"] else None
    if not (isinstance(rows, list) and rows and all(isinstance(x, dict) for x in rows)):
        return  # the body itself is wrong: there is no record to name
    i, field = first["index"], first["field"].split(".")[0]
    if "duplicate" in first["message"]:  # the second of two records with one (product_id, cutoff): an earlier one
        assert ids_of(rows[:i]).count(str(rows[i]["product_id"]).strip()), (payload, rows)
    assert isinstance(i, int) and 0 <= i < len(rows), payload
    assert payload["detail"].startswith(f"record {i}: field '{first['field']}'"), payload
    assert field in rows[i] or field in ("product_id", "sales"), (payload, rows[i])
    if "duplicate" not in first["message"]:
        alone = httpx.post(url, content=json.dumps({"records": [rows[i]]}).encode(), timeout=120,
                           headers={"content-type": "application/json"})
        assert alone.status_code == 422 and alone.json()["errors"][0]["field"] == first["field"], (payload, alone.text)


# records pydantic accepts and the record checks refuse (the generated bodies seldom reach them): a channel shorter
# than sales, a duplicate id; each behind a good record, so the index named matters
@example(body={"records": [{"product_id": "p1", "sales": [1.0]}, {"product_id": "p2", "sales": [1.0, 2.0],
                                                                  "price": [1.0]}, {"product_id": "p3", "sales": [2.0]}]})
@example(body={"records": [{"product_id": "p1", "sales": [1.0]}, {"product_id": "p2", "sales": [1.0]},
                           {"product_id": "p1", "sales": [3.0]}]})
@settings(max_examples=BUDGET)
@given(body=bodies)
def test_predict_answers_each_record_once_or_names_the_bad_one(url, body):
    r = httpx.post(f"{url}/v1/predict", content=json.dumps(body).encode(), timeout=60,
                   headers={"content-type": "application/json"})
    payload = check_response(r, body, f"{url}/v1/predict")
    for res in (payload or {}).get("results", []):
        assert math.isclose(sum(res["probabilities"].values()), 1.0, abs_tol=1e-5)


@settings(max_examples=max(5, BUDGET // 4))
@given(rows=json_records)
def test_explain_answers_finite_json_or_names_the_bad_record(url, rows):
    # encoded by hand, as a client that writes Infinity / NaN would (httpx's json= refuses them)
    r = httpx.post(f"{url}/v1/explain", params={"text_steps": 0}, content=json.dumps({"records": rows}).encode(),
                   headers={"content-type": "application/json"}, timeout=120)
    payload = check_response(r, {"records": rows}, f"{url}/v1/explain?text_steps=0")
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


# ---- 4. option values of benchmark, backtest and explain ----------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
# a cheap run on the sample log (one rule baseline, no neural row); the drawn options come after and win
LOG_ARGS = ["--preset", "none", "--sales", ROOT / "data_samples" / "orders.csv", "--price-col", "price",
            "--invoice-col", "order_id", "--set", "sales.channels=[orders]", "--history", "8", "--max-products", "20",
            "--no-progress"]
BASE_ARGS = {"benchmark": [*LOG_ARGS, "--variants", "none", "--forecasters", "none", "--baselines", "majority",
                           "--examples", "0", "--train-cutoffs", "2023-01-01:2023-08-06",
                           "--val-cutoffs", "2023-09-03:2023-09-17", "--test-cutoffs", "2023-10-15:2023-10-29"],
             "backtest": [*LOG_ARGS, "--rows", "majority", "--origins", "2023-09-17:2023-11-12"]}
any_option_value = st.one_of(st.sampled_from(
    ["", ",", " ", "0", "-1", "1", "2", "3", "8", "1.5", "1e9", "nan", "inf", "abc", "none", "0,0", "0,1", "1,,2",
     "2023-13-45", "2023-10-15", "2023-10-29:2023-10-15", "2023-09-17:2023-11-12", "abc:def", ":", "-x"]), weird_text)
cheap = any_option_value.filter(lambda v: v.strip().lower() != "all")  # `--variants all` trains every ablation
counts = st.sampled_from(["1", "2", "4", "8"])
dates = st.sampled_from(["2023-01-01:2023-08-06", "2023-09-03:2023-09-17", "2023-10-15:2023-10-29",
                         "2023-11-12:2023-11-26"])
SHARED = {"--history": counts, "--horizon": counts, "--stride": counts, "--min-history-units": counts, "--K": counts,
          "--F": counts, "--alpha": st.just("0.5"), "--tau": st.just("0.1"), "--seeds": st.just("0,1")}
OPTIONS = {
    "benchmark": {**SHARED, "--train-cutoffs": dates, "--val-cutoffs": dates, "--test-cutoffs": dates,
                  "--baselines": st.sampled_from(["majority", "persistence,majority", "none"]),
                  "--variants": st.just("none"), "--forecasters": st.just("none"), "--examples": counts},
    "backtest": {**SHARED, "--origins": st.sampled_from(["2023-09-17:2023-11-12", "2023-11-12:2023-11-12",
                                                         "2022-01-01:2022-02-01"]),
                 "--every": counts, "--rows": st.sampled_from(["majority", "persistence,majority", "mean_reversion"])},
    "explain": {"--limit": counts, "--top-words": counts, "--batch-size": counts, "--text-steps": counts},
}


@st.composite
def option_lines(draw, verb: str) -> list[str]:
    """1-3 options of `verb`, each a cheap valid value or any value at all."""
    names = draw(st.lists(st.sampled_from(sorted(OPTIONS[verb])), min_size=1, max_size=3, unique=True))
    return [a for n in names for a in (n, draw(st.one_of(OPTIONS[verb][n], cheap)))]


def check_refusal_or_output(rc: int, err: list[str], out: Path) -> bool:
    """Exit 2 with one line and nothing at `out`, or exit 0; True when it ran."""
    assert rc in (0, 2) and not any("Traceback" in line for line in err), (rc, err)
    event(f"exit {rc}")  # --hypothesis-show-statistics: how many runs were accepted
    assert all(line.startswith("trendnlp ") for line in err), err  # errors and warnings only, one line each
    if rc == 2:
        errors = [line for line in err if ": error: " in line]
        assert len(errors) == 1 and ": error: unexpected " not in errors[0], err
        assert not out.exists(), f"partial output after {errors[0]}"
    return rc == 0


@settings(max_examples=max(4, BUDGET // 6))  # an accepted run prepares, splits and reports: 2-8 s on shared cores
@given(verb=st.sampled_from(["benchmark", "backtest"]), data=st.data())
def test_benchmark_and_backtest_options_run_or_are_refused_in_one_line(tmp_path_factory, verb, data):
    from trendnlp.cli import build_parser

    options = data.draw(option_lines(verb))
    out = tmp_path_factory.mktemp(f"fuzz_{verb}") / "out"
    argv = [verb, *BASE_ARGS[verb], "--out", out, *options]
    rc, err = run_cli(argv)
    if not check_refusal_or_output(rc, err, out):
        return
    args = build_parser().parse_args([str(a) for a in argv])  # the values the run used
    if verb == "benchmark":
        rows = json.loads((out / "results.json").read_text())["rows"]
        assert {r["name"] for r in rows} == set(args.baselines if args.baselines != ["none"] else [])
    else:
        res = json.loads((out / "backtest.json").read_text())
        assert res["origins"] and all(list(res["per_origin"][o]) == args.rows for o in res["origins"])
        assert {p.name for p in out.glob("origin_*")} == {f"origin_{o}" for o in res["origins"]}


@settings(max_examples=max(4, BUDGET // 5))  # each example loads the model folder, as the CLI does
@given(options=option_lines("explain"))
def test_explain_options_run_or_are_refused_in_one_line(model_dir, tmp_path_factory, options):
    from trendnlp.cli import build_parser

    d = tmp_path_factory.mktemp("fuzz_explain")
    inp, out = d / "in.jsonl", d / "out.jsonl"
    write_records(make_records(5, 1), inp)
    argv = ["explain", "--model", model_dir, "--input", inp, "--output", out, *options]
    rc, err = run_cli(argv)
    if not check_refusal_or_output(rc, err, out):
        return
    args = build_parser().parse_args([str(a) for a in argv])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == min(5, args.limit or 5)
    assert all(len(e["top_words"]) <= (args.top_words if args.text_steps else 0) for e in lines)
