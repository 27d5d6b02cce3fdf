"""`trendnlp benchmark` end to end, scaled down: a synthetic Online Retail-format order log (always), the real
file with a few hundred products (when ../shared is present), the report's HTML in headless Chromium (when
installed), and the pieces (option parsing, aggregation over seeds, choosing `fused` on validation)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import load_script
from trendnlp.benchmark import inputs as bench_inputs
from trendnlp.benchmark import rows as bench_rows, run as bm
from trendnlp.cli import main as cli_main
from trendnlp.data.record_files.split import ONLINE_RETAIL_SPLIT
from trendnlp.labels import LABELS
from trendnlp.benchmark.forecasters import FORECASTERS, statsforecast_available
from trendnlp.benchmark.report import format_results_table, markdown_table, pick_examples

ROOT = Path(__file__).resolve().parents[1]
# the hybrid's boosting branch at test size: one grid point, few rounds
SMALL_HYBRID = ["--set", "model.boosting_leaves=[7]", "--set", "model.boosting_max_rounds=30",
                "--set", "model.boosting_min_data_in_leaf=5"]
ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.parquet"
NEURAL = list(bm.VARIANTS)


def expected_row_names() -> list[str]:
    """Every row of a full run, in table order: baselines (+offsets twins), forecasters, the saved product and its
    refit (each with its branches alone), the neural ablations, fused."""
    with_offsets = [n for b in BASELINE_NAMES for n in ([b, f"{b}+offsets"] if b in PROBABILISTIC else [b])]
    forecasters = list(FORECASTERS) if statsforecast_available() else []
    product = [f"{p}{b}" for p in bm.PRODUCT_VARIANTS for b in ("", ":neural", ":boosting")]
    return with_offsets + forecasters + product + NEURAL + ["fused"]
BASELINE_NAMES = ["majority", "persistence", "mean_reversion", "sales_logreg", "sales_hgb", "text_tfidf_logreg",
                  "gbm_all", "gbm_all_text"]
PROBABILISTIC = ("sales_logreg", "sales_hgb", "text_tfidf_logreg", "gbm_all", "gbm_all_text")  # + `+offsets` rows
FIGURES = ["per_class_f1.png", "validation_f1.png", "confusion_matrix_fused.png"]


# ---- pieces --------------------------------------------------------------------------------------
def test_parse_options():
    assert bench_inputs.parse_range("2011-09-11:2011-09-25", "--val-cutoffs") == ("2011-09-11", "2011-09-25")
    with pytest.raises(ValueError, match="--val-cutoffs: expected FROM:TO"):
        bench_inputs.parse_range("2011-09-11", "--val-cutoffs")
    assert bench_inputs.parse_seeds("0,1,2") == [0, 1, 2]
    for bad in ("", "a", "1,1"):
        with pytest.raises(ValueError, match="--seeds"):
            bench_inputs.parse_seeds(bad)
    from trendnlp.cli import build_parser
    from trendnlp.config import TrendConfig

    # default rows: the comparison's (sales_only + the config's fused model); `all` adds the ablations
    gated, concat = TrendConfig(), TrendConfig.from_dict({"fusion": {"method": "concat"}})
    assert bm.default_variants(None, gated) == bm.default_variants(None, concat) == ["trendnlp", "sales_only"]
    assert bm.default_variants("all", gated) is None and bm.default_variants("none", gated) == []
    assert bm.default_variants("text_only", gated) == ["text_only"]
    args = build_parser().parse_args(["benchmark", "--sales", "x.parquet", "--out", "o"])
    assert args.variants is None and bench_inputs.names_option(args.forecasters) is None and args.baselines is None


def test_subsample_keeps_whole_products_and_is_seeded():
    recs = [{"product_id": f"p{i % 20}", "cutoff": f"2011-06-{5 + i // 20:02d}"} for i in range(60)]
    a, b = bench_inputs.subsample_products(recs, 5), bench_inputs.subsample_products(recs, 5)
    assert a == b and len({r["product_id"] for r in a}) == 5 and len(a) == 15
    assert bench_inputs.subsample_products(recs, None) == recs and bench_inputs.subsample_products(recs, 100) == recs


def _run(seed: int, val: float, test: float) -> dict:
    f1 = {c: test for c in LABELS}
    return {"seed": seed, "accuracy": test, "macro_f1": test, "f1_per_class": f1, "val_macro_f1": val,
            "confusion_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "seconds": 1.0}


def test_aggregate_and_fused_is_chosen_on_validation_not_test():
    concat = bench_rows.aggregate("fused_concat", [_run(0, 0.50, 0.70), _run(1, 0.52, 0.60)])
    gated = bench_rows.aggregate("fused_gated", [_run(0, 0.55, 0.40), _run(1, 0.57, 0.44)])
    assert concat["macro_f1"] == pytest.approx(0.65) and concat["macro_f1_min"] == pytest.approx(0.60)
    assert concat["macro_f1_std"] == pytest.approx(0.05) and concat["seeds"] == [0, 1]
    assert concat["confusion_matrix"] == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]
    fused = bench_rows.select_fused([concat, gated, {"name": "sales_hgb", "val_macro_f1": 0.9}])
    assert fused["name"] == "fused" and fused["variant"] == "fused_gated"  # higher validation, lower test
    table = format_results_table([concat, fused])
    assert table.splitlines()[0].split()[:2] == ["name", "test"] and "fused_concat" in table
    assert "| **fused** |" in markdown_table([fused])


def test_generic_order_log_with_own_column_names(tmp_path):
    """Without a preset, --product-col / --time-col / --units-col / --title-col name the columns of any log."""
    from trendnlp.cli import build_parser
    from trendnlp.config import TrendConfig

    weeks = pd.date_range("2011-01-02", periods=12, freq="W-SUN")
    log = pd.DataFrame({"sku": ["a"] * 12 + ["b"] * 12, "day": list(weeks) * 2, "qty": [3] * 12 + list(range(12)),
                        "name": ["Red mug"] * 12 + ["Blue lamp"] * 12})
    log.to_csv(tmp_path / "log.csv", index=False)
    args = build_parser().parse_args([
        "benchmark", "--preset", "none", "--sales", str(tmp_path / "log.csv"), "--out", str(tmp_path / "out"),
        "--product-col", "sku", "--time-col", "day", "--units-col", "qty", "--title-col", "name", "--history", "4",
        "--horizon", "2", "--F", "2", "--min-history-units", "1",
        "--set", "sales.price_channels=false", "--set", "sales.channels=[]"])  # the log has units only
    config = TrendConfig.from_dict(bench_inputs.load_config_dict(args))
    assert (config.sales.history, config.labels.F) == (4, 2)
    records, notes = bench_inputs.prepare_records(args, config, progress=False)
    assert {r["product_id"] for r in records} == {"a", "b"} and records[0]["title"] in ("Red mug", "Blue lamp")
    assert all(len(r["sales"]) == 4 and len(r["future_sales"]) == 2 for r in records) and notes


def test_pick_examples_spreads_over_labels_at_the_last_cutoff():
    recs = [{"product_id": f"p{i}", "cutoff": "2011-11-06" if i < 30 else "2011-10-30", "label": LABELS[i % 3]}
            for i in range(40)]
    picked = pick_examples(recs, 6)
    assert len(picked) == 6 and {r["cutoff"] for r in picked} == {"2011-11-06"}
    assert sorted(r["label"] for r in picked) == sorted(LABELS * 2)


# ---- a synthetic order log in the Online Retail format --------------------------------------------
def synthetic_order_log(n_products: int = 36, weeks: int = 36, seed: int = 0) -> pd.DataFrame:
    """Order lines like UCI Online Retail II (Invoice, Price, Customer ID), with the product column renamed
    to `SKU`; includes a cancellation and a non-product code that the preset's cleaning must drop."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2011-01-03")  # a Monday: week 1 ends Sunday 2011-01-09
    rows = []
    for p in range(n_products):
        level, growth = rng.uniform(2, 20), rng.choice([-0.08, 0.0, 0.08])
        season = rng.uniform(0, 2 * np.pi)
        for w in range(weeks):
            mean = level * np.exp(growth * (w - weeks / 2) + 0.6 * np.sin(2 * np.pi * w / 12 + season))
            for _ in range(int(rng.poisson(mean / 3)) + (w == 0)):
                rows.append({"Invoice": f"5{len(rows):05d}", "SKU": f"{20000 + p}", "Description": f"ITEM {p % 9} "
                             f"{['RED MUG', 'LANTERN', 'BAG'][p % 3]}", "Quantity": int(rng.integers(1, 6)),
                             "InvoiceDate": start + pd.Timedelta(days=7 * w + int(rng.integers(0, 7)), hours=10),
                             "Price": 2.5, "Customer ID": 17850.0})
    rows.append({**rows[0], "Invoice": "C500001", "Quantity": -3})  # a cancellation
    rows.append({**rows[1], "SKU": "POST", "Description": "POSTAGE"})  # not a product
    df = pd.DataFrame(rows)
    df["InvoiceDate"] = df["InvoiceDate"].dt.strftime("%Y-%m-%d %H:%M")
    return df


SYNTH_SPLIT = ["--train-cutoffs", "2011-03-06:2011-05-22", "--val-cutoffs", "2011-06-19:2011-07-03",
               "--test-cutoffs", "2011-07-31:2011-08-14"]


@pytest.fixture(scope="module")
def small_hgb_grid():
    """Two grid points and 20 boosting rounds (one point, 30 rounds for LightGBM): the boosting baselines are the
    slowest part of a tiny benchmark."""
    from trendnlp.benchmark.baselines import SalesHGBBaseline
    from trendnlp.benchmark.gbm import GBMAllBaseline

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SalesHGBBaseline, "grid", SalesHGBBaseline.grid[:2])
        mp.setattr(SalesHGBBaseline, "max_iter", 20)
        mp.setattr(SalesHGBBaseline, "eval_every", 5)
        mp.setattr(GBMAllBaseline, "grid", GBMAllBaseline.grid[:1])
        mp.setattr(GBMAllBaseline, "max_rounds", 30)
        yield


@pytest.fixture(scope="module")
def synthetic_run(tiny_bert_dir, tmp_path_factory, small_hgb_grid) -> Path:
    d = tmp_path_factory.mktemp("bench_synth")
    synthetic_order_log().to_parquet(d / "orders.parquet")
    out = d / "out"
    rc = cli_main(["benchmark", "--preset", "online-retail", "--sales", str(d / "orders.parquet"), "--out", str(out),
                   "--product-col", "SKU", "--history", "8", "--min-history-units", "1", *SYNTH_SPLIT,
                   "--base-model", tiny_bert_dir, "--epochs", "1", "--seeds", "0,1", "--examples", "3",
                   "--set", "train.batch_size=16", "--set", "text.lora_r=4", "--set", "sales.hidden_size=16",
                   "--set", "fusion.hidden_size=32", *SMALL_HYBRID, "--variants", "all", "--no-progress"])
    assert rc == 0
    return out


def test_benchmark_on_synthetic_order_log(synthetic_run, capsys):
    out = synthetic_run
    results = json.loads((out / "results.json").read_text())
    names = [r["name"] for r in results["rows"]]
    assert names == expected_row_names()
    for r in results["rows"]:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1
        assert set(r["f1_per_class"]) == set(LABELS) and (r["seeds"] or r["kind"] == "forecaster")
    product = next(r for r in results["rows"] if r["name"] == "trendnlp")
    assert [run["seed"] for run in product["runs"]] == [0, 1] and 0 <= product["runs"][0]["blend_weight"] <= 1
    # the row is the saved model of `trendnlp train --records`: its own split, the benchmark's test records
    for run in product["runs"]:
        saved = json.loads((Path(run["model_dir"]).parent / "metrics.json").read_text())
        assert saved["split"]["ranges"]["test"] == results["split"]["test"]
        assert saved["test"]["macro_f1"] == pytest.approx(run["macro_f1"], abs=1e-9)
    refit = json.loads((out / "runs" / "trendnlp_refit" / "seed_0" / "model" / "config.json").read_text())
    assert refit["refit"]["records"] > results["records"]["train"] + results["records"]["validation"]
    assert (out / "runs" / "fused_concat" / "seed_0" / "probs_test.npy").is_file()
    neural = {r["name"]: r for r in results["rows"] if r["kind"] == "neural"}
    for r in neural.values():
        assert r["seeds"] == [0, 1] and len(r["runs"]) == 2
        assert r["macro_f1_min"] <= r["macro_f1"] and r["macro_f1_std"] >= 0
        assert all(len(run["val_curve"]) == 1 and run["best_epoch"] == 1 for run in r["runs"])
        assert not (Path(r["runs"][0]["model_dir"]).parent / "checkpoints").exists()  # removed after training
    fused = neural["fused"]
    candidates = [neural[n] for n in NEURAL if n.startswith("fused_")]
    assert fused["variant"] == max(candidates, key=lambda r: r["val_macro_f1"])["name"]
    assert fused["macro_f1"] == neural[fused["variant"]]["macro_f1"]
    assert results["split"]["val"] == ["2011-06-19", "2011-07-03"] and results["options"]["history"] == 8
    assert {"prepare", "split", "baselines", "report", "total"} <= set(results["timings"])
    # the split respects the ranges, and validation / test records are written sorted by product
    test = pd.read_parquet(out / "data" / "test.parquet")
    assert test["cutoff"].between("2011-07-31", "2011-08-14").all() and test["product_id"].is_monotonic_increasing
    assert "POST" not in set(test["product_id"])
    for name in FIGURES:
        assert (out / name).stat().st_size > 1000
    assert len(list((out / "products").glob("*.png"))) == 3
    md = (out / "results.md").read_text()
    assert "| **fused** |" in md and "sales_hgb" in md and "| total |" in md
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(FIGURES) + 3
    assert "<table>" in page and "fused_cross_attention" in page


def test_benchmark_errors_are_clear(tmp_path, capsys):
    rc = cli_main(["benchmark", "--out", str(tmp_path)])
    assert rc == 2 and "--sales PATH" in capsys.readouterr().err
    rc = cli_main(["benchmark", "--sales", "x.parquet", "--out", str(tmp_path), "--val-cutoffs", "2011-09-11"])
    assert rc == 2 and "--val-cutoffs: expected FROM:TO" in capsys.readouterr().err


# ---- the report in a real browser ----------------------------------------------------------------
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_calibration_check_script_on_the_synthetic_run(synthetic_run, small_hgb_grid, capsys):
    script = load_script("experiments/calibration_check")
    model = synthetic_run / "runs" / "fused_concat" / "seed_0" / "model"
    assert script.main(["--model", str(model), "--data", str(synthetic_run / "data"), "--test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    held = [ln for ln in lines if "held-out validation" in ln]
    n_cutoffs = pd.read_parquet(synthetic_run / "data" / "validation.parquet")["cutoff"].nunique()
    assert n_cutoffs > 1 and len(held) == 2 * n_cutoffs  # each validation cutoff, for the model and the baseline
    assert sum("test (offsets from all validation)" in ln for ln in lines) == 2


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_report_html_renders_in_headless_chromium(synthetic_run, tmp_path):
    from matplotlib.image import imread

    page = (synthetic_run / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    common = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,2000", page], check=True, timeout=120,
                   capture_output=True)
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.std() > 0.05 and (pixels < 0.5).mean() > 0.001  # not blank: text, table lines, figures
    dom = subprocess.run([*common, "--dump-dom", page], check=True, timeout=120, capture_output=True,
                         text=True).stdout
    assert dom.count("<img") == len(FIGURES) + 3 and "data:image/png;base64," in dom and "fused" in dom


# ---- the real Online Retail file, a few hundred products ----------------------------------------
@pytest.mark.skipif(not ONLINE_RETAIL.exists(), reason=f"{ONLINE_RETAIL} not present")
def test_benchmark_on_online_retail_subset(tiny_bert_dir, tmp_path, small_hgb_grid):
    out = tmp_path / "out"
    rc = cli_main(["benchmark", "--preset", "online-retail", "--sales", str(ONLINE_RETAIL), "--out", str(out),
                   "--max-products", "200", "--base-model", tiny_bert_dir, "--epochs", "1", "--seeds", "0",
                   "--examples", "2", "--set", "text.lora_r=4", "--set", "sales.hidden_size=16",
                   "--set", "fusion.hidden_size=32", *SMALL_HYBRID, "--variants", "all", "--no-progress"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["rows"]] == expected_row_names()
    assert results["split"] == {k: list(v) for k, v in zip(("train", "val", "test"), ONLINE_RETAIL_SPLIT.values())}
    assert 0 < results["records"]["test"] < results["records"]["train"]
    assert (out / "report.html").exists() and (out / "confusion_matrix_fused.png").exists()


# ---- fair rows: the new-product slice --------------------------------------------------------
def test_new_product_mask_uses_first_sale_and_needs_it():
    recs = [{"cutoff": "2011-10-23", "first_sale": d, "freq": "W"} for d in ("2011-08-28", "2011-08-21", "2010-12-05")]
    assert bench_rows.new_product_mask(recs).tolist() == [True, False, False]  # 8 weeks before the cutoff is still new
    assert bench_rows.new_product_mask([{"cutoff": "2011-10-23", "freq": "W"}]) is None


# ---- options checked at the edge: one line, nothing written ----------------------------------------------------
ORDERS_ARGS = ["benchmark", "--preset", "none", "--sales", ROOT / "data_samples" / "orders.csv", "--price-col", "price",
               "--invoice-col", "order_id", "--set", "sales.channels=[orders]", "--history", "8",
               "--variants", "none", "--forecasters", "none", "--baselines", "majority", "--no-progress",
               "--train-cutoffs", "2023-01-01:2023-08-06", "--val-cutoffs", "2023-09-03:2023-09-17",
               "--test-cutoffs", "2023-10-15:2023-10-29"]


@pytest.mark.parametrize("extra, words", [
    (["--seeds", ""], ["argument --seeds: expected distinct whole numbers"]),  # as backtest says (was: seeds 0,1,2)
    (["--seeds", "0,0"], ["argument --seeds: a seed is given more than once in '0,0'"]),
    (["--test-cutoffs", "2030-01-01:2030-02-01"], ["the test part is empty: no record has a cutoff in the "
                                                   "--test-cutoffs range; the records' cutoffs run from 2022-"]),
    (["--baselines", "majority,nope"], ["argument --baselines: unknown name(s) nope", "known: majority,"]),
    (["--variants", "fused_nope"], ["argument --variants: unknown name(s) fused_nope"]),
    (["--examples", "-1"], ["argument --examples: expected a whole number >= 0, found '-1'"]),
    (["--val-cutoffs", "2011-09-25:2011-09-11"], ["argument --val-cutoffs: FROM 2011-09-25 is after TO 2011-09-11"]),
    (["--set", "sales.channels=[orders,customers]"], ["`customers` channel", "--customer-col COLUMN",
                                                      "--set 'sales.channels=[orders]'"]),
])
def test_bad_benchmark_options_are_one_line_and_write_nothing(tmp_path, capsys, extra, words):
    from conftest import cli_error

    out = tmp_path / "out"
    err = cli_error([*ORDERS_ARGS, "--out", out, *extra], capsys)
    assert err.startswith("trendnlp benchmark: error: ") and all(w in err for w in words), err
    assert not out.exists()


def test_a_config_that_is_not_a_mapping_is_named(tmp_path, capsys):
    from conftest import cli_error

    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    err = cli_error([*ORDERS_ARGS, "--out", tmp_path / "out", "--config", tmp_path / "list.yaml"], capsys)
    assert "list.yaml: expected a mapping of sections (text, sales, ...), found list" in err
    assert not (tmp_path / "out").exists()
