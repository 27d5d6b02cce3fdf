"""The channel registry and its first users, `orders` and `customers`: built by prepare from the log's invoice
and customer columns without look-ahead (training and as-of records alike), validated, stored, fed to the
sales encoder and to the baselines' feature matrix."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trendnlp.model.boosting_features import sales_calendar_matrix
from trendnlp.model.boosting_features import sales_channel_feature_names as channel_feature_names
from trendnlp.cli import build_parser
from trendnlp.data.orderlog.prepare_args import prepare_options
from trendnlp.config import SalesConfig, TrendConfig
from trendnlp.data.record_files import channels
from trendnlp.data.record_files.channels import CHANNELS, fed_channels
from trendnlp.data.inputs.features import sales_channel_names, sales_features
from trendnlp.data.orderlog.prepare import prepare
from trendnlp.data.record_files.io import write_records
from trendnlp.data.record_files.records import read_records
from trendnlp.data.record_files.io import RecordError
from trendnlp.errors import ConfigError
from trendnlp.labels import LabelRule
from trendnlp.model.classifier import TrendClassifier

SUNDAY = dt.date(2024, 1, 7)
WEEKS = 10


def _log(late_invoices: int = 1, late_customers: int = 1) -> pd.DataFrame:
    """Product a sells in 2 invoices a week (one without a customer id, one invoice of two lines), b in one;
    `late_*` sets the number of invoices / customers of a in weeks 7..9 only (after the checked cutoffs)."""
    rows, n = [], 0
    for i in range(WEEKS):
        day = (SUNDAY + dt.timedelta(weeks=i)).isoformat()  # the last day of week i
        if i >= 7:
            for k in range(late_invoices):
                n += 1
                rows.append(("a", day, 1, 1.0, f"inv{n}", f"c{k % late_customers}"))
        else:
            n += 1
            rows += [("a", day, 2, 1.0, f"inv{n}", "c1"), ("a", day, 1, 1.0, f"inv{n}", "c1")]  # one invoice, 2 lines
            n += 1
            rows.append(("a", day, 4, 1.0, f"inv{n}", None))  # no customer id: an order, but no customer
        if i >= 2:
            n += 1
            rows.append(("b", day, 3, 2.0, f"inv{n}", f"c{i % 2}"))
    return pd.DataFrame(rows, columns=["product_id", "timestamp", "units", "price", "invoice", "customer"])


KW = dict(invoice_col="invoice", customer_col="customer", history=4, horizon=2, min_history_units=0,
          progress=False)


def _by_key(records):
    return {(r["product_id"], r["cutoff"]): r for r in records}


def test_orders_and_customers_count_distinct_values_per_period():
    recs = _by_key(prepare(_log(), **KW).records)
    cut = (SUNDAY + dt.timedelta(weeks=6)).isoformat()
    a, b = recs[("a", cut)], recs[("b", cut)]
    assert a["sales"] == [7.0] * 4 and a["orders"] == [2.0] * 4  # 3 lines in 2 invoices
    assert a["customers"] == [1.0] * 4  # the row without a customer id is not counted
    assert b["orders"] == [1.0] * 4 and b["customers"] == [1.0] * 4
    assert len(a["orders"]) == len(a["customers"]) == len(a["sales"])


def test_orders_and_customers_never_see_past_the_cutoff():
    base = _by_key(prepare(_log(), **KW).records)
    changed = _by_key(prepare(_log(late_invoices=9, late_customers=5), **KW).records)
    cut = (SUNDAY + dt.timedelta(weeks=6)).isoformat()  # the last cutoff before the changed weeks
    checked = 0
    for key, r in base.items():
        if key[1] <= cut:
            for field in ("sales", "orders", "customers", "market_sales"):
                assert changed[key][field] == r[field], (key, field)
            checked += 1
    assert checked >= 4
    late = (SUNDAY + dt.timedelta(weeks=7)).isoformat()
    assert changed[("a", late)]["orders"][-1] == 9 and changed[("a", late)]["customers"][-1] == 5


def test_as_of_record_is_the_training_record_without_its_future():
    log = _log(late_invoices=3, late_customers=2)
    train = _by_key(prepare(log, **KW).records)
    for weeks in (4, 6, 7):
        cut = (SUNDAY + dt.timedelta(weeks=weeks)).isoformat()
        (today,) = [r for r in prepare(log, **{**KW, "as_of": cut}).records if r["product_id"] == "a"]
        expected = {k: v for k, v in train[("a", cut)].items() if k not in ("label", "future_sales", "change")}
        assert today == expected
        # a log cut at the cutoff gives the same record: nothing later entered it
        early = log[pd.to_datetime(log["timestamp"]) <= pd.Timestamp(cut)]
        (cut_log,) = [r for r in prepare(early, **{**KW, "as_of": cut}).records if r["product_id"] == "a"]
        assert cut_log == today


def test_without_the_columns_the_channels_are_absent():
    recs = prepare(_log(), history=4, horizon=2, min_history_units=0, progress=False).records
    assert all(r["orders"] is None and r["customers"] is None for r in recs)
    with pytest.raises(TypeError, match="invoice_column"):
        prepare(_log(), invoice_column="invoice", progress=False)
    with pytest.raises(RecordError, match="--customer-col"):
        prepare(_log(), customer_col="buyer", progress=False)


# the verbs that read an order log through prepare's options, each with its other required options
LOG_VERBS = {"prepare": ["--sales", "x.csv", "--out", "y.parquet"], "train": ["--sales", "x.csv", "--output-dir", "r"],
             "label": ["--model", "m", "--sales", "x.csv", "--output", "o.csv"]}


def test_cli_options_come_from_the_registry(monkeypatch):
    """Every channel built from a log column has its `--<column>` option on each verb that reads an order log,
    parsed into prepare's keyword of that name (the others left None) and on benchmark / backtest; a channel
    registered here, which no hand-written list could know, included."""
    monkeypatch.setitem(CHANNELS, "probe", channels.Channel("probe", "a channel of this test", build="sum",
                                                            column="probe_col"))
    with_column = [ch for ch in channels.context_channels() if ch.column]
    assert {"price", "orders", "customers", "probe"} <= {ch.name for ch in with_column}
    for verb, argv in LOG_VERBS.items():
        for ch in with_column:
            opts = prepare_options(build_parser().parse_args([verb, *argv, ch.cli_flag, "the_column"]))
            assert {c.column: opts[c.column] for c in with_column} == {
                c.column: "the_column" if c is ch else None for c in with_column}, (verb, ch.name)
    for verb in ("benchmark", "backtest"):
        for ch in with_column:
            args = build_parser().parse_args([verb, "--out", "o", ch.cli_flag, "the_column"])
            assert getattr(args, ch.column) == "the_column" and ch.cli_flag in _subcommand_help(verb), (verb, ch.name)


def _prepare_help() -> str:
    return _subcommand_help("prepare")


def _subcommand_help(name: str) -> str:
    import argparse

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name].format_help()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_channels_survive_writing_and_reading(tmp_path, fmt):
    recs = prepare(_log(), **KW).records
    write_records(recs, tmp_path / f"r.{fmt}")
    back = read_records(str(tmp_path / f"r.{fmt}"))
    assert [(r["orders"], r["customers"]) for r in back] == [(r["orders"], r["customers"]) for r in recs]


def test_bad_channel_values_name_the_field():
    with pytest.raises(RecordError, match="orders.*3 periods, but sales has 2"):
        read_records([{"product_id": "a", "sales": [1, 2], "orders": [1, 1, 1]}])
    with pytest.raises(RecordError, match="customers.*negative"):
        read_records([{"product_id": "a", "sales": [1, 2], "customers": [1, -1]}])
    with pytest.raises(RecordError, match="orders"):
        read_records([{"product_id": "a", "sales": [1, 2], "orders": [1, None]}])  # only price may hold nulls


def test_fed_channels_widen_the_encoder_and_round_trip(tmp_path):
    cfg = SalesConfig(history=6, calendar=False, channels=["orders", "customers"])
    assert sales_channel_names(cfg)[-2:] == ["orders", "customers"]
    rec = {"sales": [1, 0, 2, 2], "orders": [1, 0, 2, 1], "customers": [1, 0, 1, 1]}
    x, _ = sales_features(rec, cfg)
    m = np.log1p([1, 0, 2, 1])
    assert x.shape == (6, 8) and (x[:2] == 0).all()
    np.testing.assert_allclose(x[2:, 6], m - m.mean(), atol=1e-6)
    with pytest.raises(ConfigError, match="unknown channel"):
        fed_channels(SalesConfig(channels=["returns"]))

    config = TrendConfig.from_dict({"text": {"enabled": False}, "sales": {"history": 4, "hidden_size": 8,
                                    "channels": ["orders", "customers"]}, "fusion": {"hidden_size": 16}})
    recs = read_records(prepare(_log(), **KW).records)
    torch.manual_seed(0)
    model = TrendClassifier(config).fit_feature_scaling(recs)
    assert model.sales_encoder.lstm.input_size == 8
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["sales_channels"][-2:] == ["orders", "customers"]
    loaded = TrendClassifier.from_pretrained(tmp_path)
    np.testing.assert_allclose(loaded.predict_proba(recs), model.predict_proba(recs), atol=1e-6)
    moved = [{**r, "orders": [v * (3 + i) for i, v in enumerate(r["orders"])]} for r in recs]
    assert not np.allclose(loaded.predict_proba(moved), loaded.predict_proba(recs))


def test_default_config_feeds_no_new_channel():
    assert fed_channels(SalesConfig()) == [] and fed_channels(TrendConfig().sales) == []


def test_baseline_matrix_adds_channel_columns_before_the_calendar():
    recs = prepare(_log(), **KW).records
    plain = sales_calendar_matrix(recs, LabelRule())
    X = sales_calendar_matrix(recs, LabelRule(), channels=["orders", "customers"])
    assert X.shape[1] == plain.shape[1] + len(channel_feature_names(["orders", "customers"])) == plain.shape[1] + 6
    np.testing.assert_array_equal(X[:, -4:], plain[:, -4:])  # the calendar stays last
    np.testing.assert_array_equal(X[:, :plain.shape[1] - 4], plain[:, :-4])
    i = next(i for i, r in enumerate(recs) if r["product_id"] == "a")
    assert X[i, plain.shape[1] - 4] == pytest.approx(np.log1p(np.mean(recs[i]["orders"][-4:])))
    with pytest.raises(ValueError, match="unknown channel"):
        sales_calendar_matrix(recs, LabelRule(), channels=["returns"])


@pytest.fixture()
def lines_channel():
    """The toy channel `lines` (rows per product and period of the log's `line` column, fed to the encoder as
    "lines"): one entry in the registry for this test, taken out afterwards so other tests see the registry as
    shipped."""
    ch = channels.Channel("lines", "order lines per sales period", build="count", column="line_col",
                          features=("lines",), encode=channels.centred_log1p)
    assert "lines" not in CHANNELS
    CHANNELS["lines"] = ch
    try:
        yield ch
    finally:
        del CHANNELS["lines"]


def test_a_toy_channel_flows_end_to_end(lines_channel, tmp_path):
    """A channel declared in one place (the registry entry of `lines_channel`, after every module was imported)
    flows prepare -> record files -> train -> save/load -> label -> serve, with no other file edited."""
    import httpx

    from serving import running_server
    from trendnlp.inference.labeling import label_file
    from trendnlp.training import train

    rng = np.random.default_rng(0)
    rows = []
    for p in range(12):
        for w in range(30):
            day = (SUNDAY + dt.timedelta(weeks=w)).isoformat()
            for k in range(int(rng.integers(1, 4 + p % 3))):
                rows.append((f"p{p}", day, int(rng.integers(1, 5 + w % 7)), f"L{p}-{w}-{k}"))
    log = pd.DataFrame(rows, columns=["product_id", "timestamp", "units", "line"])
    recs = prepare(log, line_col="line", history=8, horizon=2, min_history_units=0, progress=False).records
    assert all(len(r["lines"]) == len(r["sales"]) and r["lines"][-1] >= 1 for r in recs)
    cut = sorted({r["cutoff"] for r in recs})
    val_recs = [r for r in recs if r["cutoff"] > cut[-4]]
    write_records([r for r in recs if r["cutoff"] <= cut[-6]], tmp_path / "train.parquet")
    write_records(val_recs, tmp_path / "val.jsonl")
    assert read_records(str(tmp_path / "val.jsonl"))[0]["lines"] == val_recs[0]["lines"]

    config = TrendConfig.from_dict({"text": {"enabled": False}, "sales": {"history": 8, "hidden_size": 8,
                                    "channels": ["lines"]}, "fusion": {"hidden_size": 16},
                                    "data": {"train": str(tmp_path / "train.parquet"),
                                             "validation": str(tmp_path / "val.jsonl")},
                                    "train": {"epochs": 1, "batch_size": 16, "log_with": "none"}})
    train(config, tmp_path / "run", progress=False)
    model_dir = tmp_path / "run" / "model"
    model = TrendClassifier.from_pretrained(model_dir)
    meta = json.loads((model_dir / "config.json").read_text())
    assert meta["sales_channels"][-1] == "lines" and model.sales_encoder.lstm.input_size == 7, meta["sales_channels"]
    val = read_records(str(tmp_path / "val.jsonl"))
    moved = [{**r, "lines": [v * 5 for v in r["lines"]]} for r in val]
    assert not np.allclose(model.predict_proba(moved), model.predict_proba(val))

    label_file(model_dir, tmp_path / "val.jsonl", tmp_path / "labels.csv", resume=False, progress=False)
    assert len(pd.read_csv(tmp_path / "labels.csv")) == len(val)

    body = [{k: v for k, v in r.items() if v is not None} for r in val[:3]]
    with running_server(model_dir) as url:
        got = httpx.post(f"{url}/v1/predict", json={"records": body}, timeout=60).json()
        bad = httpx.post(f"{url}/v1/predict", json={"records": [{**body[0], "lines": [-1.0] * 8}]}, timeout=60)
    expected = model.predict_proba(val[:3])
    assert np.allclose([[x["probabilities"][n] for n in model.labels] for x in got["results"]], expected, atol=1e-5)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "lines", bad.text


def test_labeling_a_log_without_a_channel_the_model_reads_fails_by_name(tmp_path):
    from trendnlp.inference.as_of import label_log

    config = TrendConfig.from_dict({"text": {"enabled": False}, "sales": {"history": 4, "hidden_size": 8,
                                    "channels": ["orders"]}, "fusion": {"hidden_size": 16}})
    recs = read_records(prepare(_log(), **KW).records)
    torch.manual_seed(0)
    model = TrendClassifier(config).fit_feature_scaling(recs)
    with pytest.raises(ConfigError, match=r"the model feeds the `orders` channel.*--invoice-col COLUMN$"):
        label_log(model, _log(), tmp_path / "today.csv", progress=False)
    summary = label_log(model, _log(), tmp_path / "today.csv", prepare_options={"invoice_col": "invoice"},
                        progress=False)
    assert summary["products"] == 2


# ---------------------------------------------------------------------------------------------
# each `build` kind aggregates the log as docs/data.md says (one log, one check per kind)
# ---------------------------------------------------------------------------------------------
def _build_log() -> pd.DataFrame:
    """Three weeks; week 0 of product a has two lines of one invoice with the same `value` 1.0 (a sum is 2, a
    distinct count 1), prices 2.0 x 2 units and 4.0 x 3 units (units-weighted 3.2, plain mean 3.0), and a line
    with no price, customer or value."""
    w = [(SUNDAY + dt.timedelta(weeks=i)).isoformat() for i in range(3)]
    rows = [("a", w[0], 2, 2.0, "i1", "c1", 1.0), ("a", w[0], 3, 4.0, "i1", "c1", 1.0),
            ("a", w[0], 1, None, "i2", None, None), ("b", w[0], 5, 1.0, "i3", "c2", 3.0),
            ("a", w[1], 4, 2.0, "i4", "c1", 2.5), ("b", w[1], 1, 1.0, "i4", "c1", 0.0),
            ("a", w[2], 1, 1.0, "i5", "c1", 1.0), ("b", w[2], 1, 1.0, "i6", "c2", 1.0)]
    return pd.DataFrame(rows, columns=["product_id", "timestamp", "units", "price", "invoice", "customer", "value"])


@pytest.mark.parametrize("build, expected_a, expected_b", [
    ("sum", [2.0, 2.5], [3.0, 0.0]),  # numbers summed: two lines of 1.0 are 2, not one distinct value
    ("mean", [3.2, 2.0], [1.0, 1.0]),  # units-weighted: (2 x 2.0 + 3 x 4.0) / 5 over the lines with a price
    ("distinct", [2.0, 1.0], [1.0, 1.0]),  # distinct invoices: i1 (two lines) and i2
    ("count", [2.0, 1.0], [1.0, 1.0]),  # lines with a value (the empty cell is not counted)
    ("total", [11.0, 5.0], [11.0, 5.0]),  # units of every product: the same for a and b
])
def test_each_build_kind_aggregates_as_documented(monkeypatch, build, expected_a, expected_b):
    column = {"sum": "value", "mean": "price", "distinct": "invoice", "count": "value"}.get(build)
    kind = channels.Channel("probe", "a channel of this test", build=build, nullable=build == "mean",
                            column=None if build == "total" else "probe_col", of="sales" if build == "total" else None)
    monkeypatch.setitem(CHANNELS, "probe", kind)
    kw = {"probe_col": column} if column else {}
    recs = prepare(_build_log(), history=2, horizon=1, min_history_units=0, progress=False, **kw).records
    got = {r["product_id"]: r["probe"] for r in recs if r["cutoff"] == (SUNDAY + dt.timedelta(weeks=1)).isoformat()}
    assert got == {"a": pytest.approx(expected_a), "b": pytest.approx(expected_b)}


def test_a_summed_channel_refuses_a_bad_number_by_row(monkeypatch):
    monkeypatch.setitem(CHANNELS, "probe", channels.Channel("probe", "a summed channel", build="sum",
                                                            column="probe_col"))
    log = _build_log()
    log.loc[3, "value"] = -1.0
    with pytest.raises(RecordError, match=r"row \d+: .*'value'.*>= 0"):
        prepare(log, probe_col="value", history=2, horizon=1, min_history_units=0, progress=False)


def _docs_channel() -> channels.Channel:
    """The channel that docs/data.md's "How to add an input channel" declares, read from the page itself."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text(encoding="utf-8")
    section = page[page.index("## How to add an input channel"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1).strip().rstrip(",")
    return eval(code, {"Channel": channels.Channel, "centred_log1p": channels.centred_log1p})  # noqa: S307


def test_the_docs_example_channel_is_returns_per_week(monkeypatch, tmp_path):
    """Declared as the page says, `returns` holds the units returned per product and week (pandas computes the
    same sums independently), and `--returns-col` reaches the command line and the benchmark's records."""
    ch = _docs_channel()
    assert (ch.name, ch.build, ch.column) == ("returns", "sum", "returns_col")
    monkeypatch.setitem(CHANNELS, "returns", ch)
    log = _build_log().rename(columns={"value": "returned"})
    recs = prepare(log, returns_col="returned", history=3, as_of="latest", min_history_units=0,
                   progress=False).records
    weeks = pd.to_datetime(log["timestamp"]).dt.to_period("W").dt.end_time.dt.strftime("%Y-%m-%d")
    truth = log.assign(week=weeks).groupby(["product_id", "week"])["returned"].sum()
    for r in recs:
        assert r["returns"] == pytest.approx(truth[r["product_id"]].tolist())
    assert "--returns-col" in _prepare_help() and "--returns-col" in _subcommand_help("benchmark")

    from trendnlp.benchmark.inputs import prepare_records

    log.to_csv(tmp_path / "log.csv", index=False)
    args = build_parser().parse_args(["benchmark", "--sales", str(tmp_path / "log.csv"), "--preset", "none",
                                      "--returns-col", "returned", "--horizon", "1", "--min-history-units", "0",
                                      "--out", str(tmp_path / "out")])
    bench, _ = prepare_records(args, TrendConfig.from_dict({"sales": {"history": 2}}), progress=False)
    assert [r["returns"] for r in bench if r["product_id"] == "a"] == [[2.0, 2.5]]


def test_each_build_kind_aggregates_as_declared(monkeypatch):
    """The engine's dispatch on `build`: sum adds the column, count counts rows with a value, distinct counts
    distinct values, mean is units-weighted (channels declared for this test only)."""
    from trendnlp.data.orderlog.aggregate import read_log
    from trendnlp.data.record_files.channels import CHANNELS, Channel
    from trendnlp.data.record_files.io import ErrorReport

    for ch in (Channel("returned", "units returned", build="sum", column="returned_col"),
               Channel("notes", "lines with a note", build="count", column="notes_col"),
               Channel("buyers", "distinct buyers", build="distinct", column="buyers_col")):
        monkeypatch.setitem(CHANNELS, ch.name, ch)
    df = pd.DataFrame({"product_id": ["a", "a", "a", "a", "b"],
                       "timestamp": ["2024-01-01", "2024-01-01", "2024-01-02", "2024-01-03", "2024-01-03"],
                       "units": [1, 1, 3, 2, 5], "price": [2.0, 2.0, 4.0, None, 1.0], "ret": [1, 0, 2, 2, 0],
                       "note": ["x", None, None, "x", None], "buyer": ["u", "u", "v", "u", "w"]})
    log = read_log(df, "product_id", "timestamp", "units", {"price": "price", "returned": "ret", "notes": "note",
                                                            "buyers": "buyer"}, "D", ErrorReport(), "raise")
    by_day = {name: log.channels[name].sum(axis=1).tolist() for name in ("returned", "notes", "buyers")}
    assert by_day == {"returned": [5.0, 0.0], "notes": [2.0, 0.0], "buyers": [3.0, 1.0]}  # days summed
    assert log.channels["returned"][0].tolist() == [1.0, 2.0, 2.0]  # a real sum per day, not distinct values
    assert log.channels["buyers"][0].tolist() == [1.0, 1.0, 1.0]  # day 1: two lines of one buyer
    assert log.channels["price"][0, :2].tolist() == [2.0, 4.0] and np.isnan(log.channels["price"][0, 2])
