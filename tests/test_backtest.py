"""`trendnlp backtest` (docs/backtest.md): origin arithmetic, row planning, the summary, and a tiny end-to-end run on
data_samples/orders.csv through the same per-window code as `trendnlp benchmark`."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from trendnlp.benchmark import backtest as bt
from trendnlp.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
# the hybrid's boosting branch at test size: one grid point, few rounds
SMALL_HYBRID = ["--set", "model.boosting_leaves=[7]", "--set", "model.boosting_max_rounds=30",
                "--set", "model.boosting_min_data_in_leaf=5"]


def test_origin_ranges_reproduce_the_section_6_split():
    """At O = 2011-10-23 the rolling split is exactly the fixed split of the two-year benchmark."""
    from trendnlp.data.record_files.split import ONLINE_RETAIL_SPLIT

    r = bt.origin_ranges("2011-10-23", "2010-05-30")
    assert r == {k: ONLINE_RETAIL_SPLIT[k] for k in ("train", "val", "test")}


def test_choose_origins_default_explicit_and_errors():
    cuts = [(dt.date(2010, 5, 30) + dt.timedelta(weeks=i)).isoformat() for i in range(76)]  # … 2011-11-06
    # default: every 8 weeks over the log's last year (the log ends 2011-12-04, 4 weeks after the last
    # cutoff), newest first from the latest origin whose test window is covered
    assert bt.choose_origins(cuts, None, 8) == ["2011-01-16", "2011-03-13", "2011-05-08", "2011-07-03", "2011-08-28",
                                                "2011-10-23"]
    assert bt.choose_origins(cuts, None, 16) == ["2011-03-13", "2011-07-03", "2011-10-23"]
    assert bt.choose_origins(cuts[:20], None, 8) == ["2010-09-26"]  # a short log: only origins with training cutoffs
    assert bt.choose_origins(cuts, "2011-03-13:2011-10-23", 16) == ["2011-03-13", "2011-07-03", "2011-10-23"]
    with pytest.raises(ValueError, match="latest possible origin is 2011-10-23"):
        bt.choose_origins(cuts, "2011-10-30:2011-10-30", 8)
    with pytest.raises(ValueError, match="no training cutoffs"):
        bt.choose_origins(cuts, "2010-06-20:2010-08-01", 8)
    with pytest.raises(ValueError, match="--origins: expected FROM:TO"):
        bt.choose_origins(cuts, "2011-03-13", 8)


def test_plan_rows():
    assert bt.plan_rows(["fused", "sales_only", "gbm_all+offsets", "gbm_all_text+offsets", "gbm_all"], "concat") == (
        ["fused_concat", "sales_only"], ["gbm_all", "gbm_all_text"])
    assert bt.plan_rows(["trendnlp:neural", "trendnlp_refit", "gbm_all_text"], "gated") == (
        ["trendnlp", "trendnlp_refit"], ["gbm_all_text"])
    with pytest.raises(ValueError, match="unknown row 'trendnlp:lstm'"):
        bt.plan_rows(["trendnlp:lstm"], "gated")
    with pytest.raises(ValueError, match="unknown row 'nope'"):
        bt.plan_rows(["nope"], "gated")


def test_summary_counts_wins_against_both_references():
    per = {o: {"fused": {"macro_f1": f, "slice_macro_f1": 0.4}, "sales_only": {"macro_f1": s},
               "gbm_all+offsets": {"macro_f1": g}}
           for o, f, s, g in (("a", 0.55, 0.50, 0.56), ("b", 0.52, 0.53, 0.50), ("c", 0.60, 0.55, 0.58))}
    s = bt.summarize(per, ["fused", "sales_only", "gbm_all+offsets"])
    assert s["fused"]["mean"] == pytest.approx(0.5566667, abs=1e-6) and s["fused"]["slice_mean"] == pytest.approx(0.4)
    assert (s["fused"]["wins_vs_sales_only"], s["fused"]["wins_vs_gbm_all+offsets"]) == (2, 2)
    assert "wins_vs_sales_only" not in s["sales_only"] and s["sales_only"]["slice_mean"] is None
    md = bt.backtest_markdown({"rows": ["fused", "sales_only", "gbm_all+offsets"], "per_origin": per, "summary": s})
    assert "| wins vs sales_only | 2/3 |" in md and "| **mean** | **0.5567** |" in md


@pytest.fixture(scope="module")
def small_boosting():
    from trendnlp.benchmark.gbm import GBMAllBaseline

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(GBMAllBaseline, "grid", GBMAllBaseline.grid[:1])
        mp.setattr(GBMAllBaseline, "max_rounds", 30)
        yield


def test_backtest_end_to_end_on_the_sample_log(tiny_bert_dir, tmp_path, small_boosting, capsys):
    pytest.importorskip("lightgbm")
    out = tmp_path / "bt"
    rc = cli_main(["backtest", "--preset", "none", "--sales", str(ROOT / "data_samples" / "orders.csv"),
                   "--texts", str(ROOT / "data_samples" / "products.csv"), "--price-col", "price",
                   "--invoice-col", "order_id", "--set", "sales.channels=[orders]",  # the log has no customer ids
                   "--out", str(out), "--history", "8", "--max-products", "40", "--origins", "2023-09-17:2023-11-12",
                   "--every", "8", "--update", "--base-model", tiny_bert_dir, "--epochs", "1",
                   "--set", "train.batch_size=32", "--set", "text.lora_r=4", "--set", "sales.hidden_size=16",
                   "--set", "fusion.hidden_size=32", *SMALL_HYBRID, "--no-progress"])
    assert rc == 0
    res = json.loads((out / "backtest.json").read_text())
    assert res["origins"] == ["2023-09-17", "2023-11-12"] and res["update"] is True
    rows = list(bt.DEFAULT_ROWS)
    for o in res["origins"]:
        assert list(res["per_origin"][o]) == rows
        split = res["splits"][o]
        assert split["test"] == [o, (dt.date.fromisoformat(o) + dt.timedelta(weeks=2)).isoformat()]
        assert split["train"][1] == (dt.date.fromisoformat(o) - dt.timedelta(weeks=10)).isoformat()
        # each origin is a full `trendnlp benchmark` output: its own results.json with the same rows
        bench = json.loads((out / f"origin_{o}" / "results.json").read_text())
        assert {r["name"]: r["macro_f1"] for r in bench["rows"] if r["name"] in rows} == {
            r: res["per_origin"][o][r]["macro_f1"] for r in rows}
        # the product row is the saved model of the pipeline's own split: the same test score as its metrics.json
        metrics = json.loads((out / f"origin_{o}" / "runs" / "trendnlp" / "seed_0" / "metrics.json").read_text())
        assert metrics["split"]["ranges"]["test"] == split["test"]
        assert metrics["test"]["macro_f1"] == pytest.approx(res["per_origin"][o]["trendnlp"]["macro_f1"], abs=1e-9)
        assert 0 <= res["per_origin"][o]["trendnlp"]["blend_weights"][0] <= 1
    # --update: the second origin's runs warm-start from the first origin's exported models
    second = json.loads((out / "origin_2023-11-12" / "results.json").read_text())
    product = next(r for r in second["rows"] if r["name"] == "trendnlp")
    assert product["runs"][0]["init_from"] == str(out / "origin_2023-09-17" / "runs" / "trendnlp" / "seed_0" / "model")
    s = res["summary"]
    assert set(s) == set(rows) and s["trendnlp"]["origins"] == 2
    assert 0 <= s["trendnlp"]["wins_vs_gbm_all+offsets"] <= 2 and "wins_vs_sales_only" not in s["trendnlp"]
    assert (out / "backtest.png").stat().st_size > 1000 and "| wins vs gbm_all+offsets |" in (
        out / "backtest.md").read_text()
    assert "| **mean** |" in capsys.readouterr().out


def test_backtest_errors_are_one_line(tmp_path, capsys):
    rc = cli_main(["backtest", "--out", str(tmp_path)])
    assert rc == 2 and "--sales PATH" in capsys.readouterr().err


ORDERS = ROOT / "data_samples" / "orders.csv"
# the sample log has an invoice column (order_id) and prices but no customer ids
ORDERS_ARGS = ["backtest", "--preset", "none", "--sales", ORDERS, "--price-col", "price", "--invoice-col", "order_id",
               "--set", "sales.channels=[orders]"]


@pytest.mark.parametrize("extra, words", [
    (["--origins", "2012-01-01:2011-01-01"], ["argument --origins: FROM 2012-01-01 is after TO 2011-01-01",
                                              "2011-01-01:2012-01-01"]),
    (["--origins", "2023-13-45:2023-14-01"], ["argument --origins:", "'2023-13-45' (month must be in 1..12)"]),
    (["--origins", "abc:def"], ["argument --origins: expected an ISO date", "found 'abc'"]),
    (["--origins", "2030-01-01:2030-02-01"], ["origin 2030-01-01", "the latest possible origin is"]),
    (["--rows", "sales_only,majority,sales_only"], ["argument --rows: sales_only given more than once"]),
    (["--rows", "majority,nope"], ["--rows: unknown row 'nope'"]),
    (["--seeds", ""], ["argument --seeds: expected distinct whole numbers"]),
    (["--every", "0"], ["argument --every: expected a whole number in 1..100,000, found '0'"]),
    (["--config", "configs/none.yaml"], ["config configs/none.yaml not found"]),
])
def test_bad_backtest_options_are_one_line_and_write_nothing(tmp_path, capsys, extra, words):
    from conftest import cli_error

    out = tmp_path / "bt"
    err = cli_error([*ORDERS_ARGS, "--out", out, "--rows", "majority", *extra], capsys)
    assert err.startswith("trendnlp backtest: error: ") and all(w in err for w in words), err
    assert not out.exists()


def test_channels_the_log_cannot_give_are_refused_by_name(tmp_path, capsys):
    """The default config feeds `orders` and `customers`: on a log without those columns the backtest used to
    train them as all zeros; now it names the channel, the option that builds it and the --set that drops it."""
    from conftest import cli_error

    out, base = tmp_path / "bt", ["backtest", "--preset", "none", "--sales", ORDERS, "--price-col", "price"]
    err = cli_error([*base, "--out", out], capsys)
    assert "the config feeds the `orders` channel" in err and "--invoice-col COLUMN" in err
    assert "--set 'sales.channels=[customers]'" in err
    err = cli_error([*base, "--invoice-col", "order_id", "--out", out], capsys)
    assert "`customers` channel" in err and "--customer-col COLUMN" in err and "sales.channels=[orders]" in err
    err = cli_error(["backtest", "--preset", "none", "--sales", ORDERS, "--set", "sales.channels=[]", "--out", out],
                    capsys)
    assert "`price` channel" in err and "--price-col COLUMN" in err and "--set sales.price_channels=false" in err
    assert not out.exists()
    # prepared records without the channel: refused after reading them, still before writing
    from trendnlp.data.record_files.io import write_records
    from conftest import make_records

    write_records(make_records(4, 2), tmp_path / "recs.jsonl")
    err = cli_error(["backtest", "--records", tmp_path / "recs.jsonl", "--out", out], capsys)
    assert "recs.jsonl: the config feeds the `price` channel" in err and not out.exists()
