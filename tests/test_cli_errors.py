"""Bad input to the command line, every verb: malformed files, order logs that do not fit, broken model folders,
wrong options, leftovers of killed runs.

Each case runs `trendnlp.cli.main([...])` in-process and asserts exit code 2, exactly one line on stderr that
names the file / option / field (the `needles`), and no traceback (`conftest.cli_error`). A few cases run the
real `python -m trendnlp` process. Row accounting (every input row lands in the output or the errors file) is
checked for prepare and label under --on-error skip. The cases work in `world` (conftest.py).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import broken_model, cli_error, edit_config, order_log, subprocess_env, truncate
from trendnlp.cli import main
from trendnlp.config import TrendConfig


# ---- files and argument lists the cases build in `world` -------------------------------------------------
def records_file(w: Path, name: str, rows: list[dict]) -> str:
    path = w / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def orders_file(w: Path, name: str, edit) -> str:
    df = order_log().astype(object)
    edit(df)
    path = w / name
    (df.to_json(path, orient="records", lines=True) if name.endswith(".jsonl") else df.to_csv(path, index=False))
    return str(path)


def train_args(w: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(w / "config.yaml"), "--output-dir", str(w / "run"), "--no-progress", *extra]


def evaluate_args(model: str, w: Path, data: str | None = None) -> list[str]:
    return ["evaluate", "--model", model, "--data", data or str(w / "good.jsonl"), "--out", str(w / "eval")]


def label_args(w: Path, model: str | None = None, inp: str | None = None, out: str | None = None, *extra: str):
    return ["label", "--model", model or str(w / "model"), "--input", inp or str(w / "good.jsonl"),
            "--output", out or str(w / "labels.csv"), "--no-progress", *extra]


def sales_label_args(w: Path, *extra, sales=None, out=None) -> list:
    return ["label", "--model", w / "model", "--sales", sales or w / "orders.csv", "--min-history-units", "1",
            "--output", out or w / "today.csv", "--no-progress", *extra]


def stamps_log(path: Path, stamps: list[str]) -> str:
    """An order log of products A and B (alternating) sold at `stamps`, written as CSV; its path."""
    pd.DataFrame({"product_id": ["A", "B"] * (len(stamps) // 2) + ["A"] * (len(stamps) % 2), "timestamp": stamps,
                  "units": range(1, len(stamps) + 1)}).to_csv(path, index=False)
    return str(path)


ONE_PARTIAL_WEEK = ["2024-01-02", "2024-01-03", "2024-01-04"]  # Tuesday to Thursday: no complete week


def market_overflow(path: Path) -> str:
    """Each product's units are finite, the whole shop's (market_sales) overflow: found by test_fuzz."""
    days = [f"2024-01-{d:02d}" for d in range(1, 29)]
    pd.DataFrame({"product_id": ["A", "B", "C"] + ["A"] * len(days), "timestamp": days[:3] + days,
                  "units": [1e308] * 3 + [1] * len(days)}).to_csv(path, index=False)
    return str(path)


def price_overflow(path: Path) -> str:
    """Finite units and prices whose product overflows in the weighted average price: found by test_fuzz."""
    days = [f"2024-01-{d:02d}" for d in range(1, 29)]
    pd.DataFrame({"product_id": ["A"] * len(days), "timestamp": days, "units": [1e10] + [1] * (len(days) - 1),
                  "price": [1e300] + [2.0] * (len(days) - 1)}).to_csv(path, index=False)
    return str(path)


# (id, argv(world), strings the one error line must contain)
CASES = [
    # ---- prepare: malformed order logs
    ("prepare-empty-csv", lambda w: ["prepare", "--sales", w / "empty.csv", "--out", w / "r.parquet"],
     ["empty.csv", "empty"]),
    ("prepare-header-only", lambda w: ["prepare", "--sales", w / "header.csv", "--out", w / "r.parquet"],
     ["header.csv", "no rows"]),
    ("prepare-not-utf8", lambda w: ["prepare", "--sales", w / "latin.csv", "--out", w / "r.parquet"],
     ["latin.csv", "UTF-8"]),
    ("prepare-corrupt-parquet", lambda w: ["prepare", "--sales", w / "garbage.parquet", "--out", w / "r.parquet"],
     ["garbage.parquet"]),
    ("prepare-missing-file", lambda w: ["prepare", "--sales", w / "nope.csv", "--out", w / "r.parquet"],
     ["nope.csv"]),
    ("prepare-missing-column", lambda w: ["prepare", "--sales", w / "orders.csv", "--units-col", "qty", "--out",
                                          w / "r.parquet"], ["qty", "--units-col"]),
    ("prepare-bool-units", lambda w: ["prepare", "--sales", orders_file(w, "bool.jsonl", lambda d: d.__setitem__(
        "units", True)), "--out", w / "r.parquet"], ["bool.jsonl", "units", "boolean"]),
    ("prepare-overflow", lambda w: ["prepare", "--sales", orders_file(w, "huge.csv", lambda d: d.__setitem__(
        "units", 1e308)), "--out", w / "r.parquet", "--history", "2", "--horizon", "1"],
     ["huge.csv", "'P0'", "infinity"]),
    ("prepare-bad-timestamp", lambda w: ["prepare", "--sales", orders_file(w, "when.csv", lambda d: d.loc.__setitem__(
        (4, "timestamp"), "yesterday")), "--out", w / "r.parquet"], ["when.csv", "row 6", "timestamp"]),
    ("prepare-negative-units", lambda w: ["prepare", "--sales", orders_file(w, "neg.csv", lambda d: d.loc.__setitem__(
        (2, "units"), -4)), "--out", w / "r.parquet"], ["neg.csv", "row 4", "units", ">= 0"]),
    ("prepare-stride-zero", lambda w: ["prepare", "--sales", w / "orders.csv", "--out", w / "r.parquet",
                                       "--stride", "0"], ["argument --stride", "found '0'"]),
    ("prepare-stride-absurd", lambda w: ["prepare", "--sales", w / "orders.csv", "--out", w / "r.parquet",
                                         "--stride", str(10 ** 20)], ["stride"]),
    ("prepare-history-absurd", lambda w: ["prepare", "--sales", w / "orders.csv", "--out", w / "r.parquet",
                                          "--history", str(10 ** 12)], ["history"]),
    ("prepare-history-too-long", lambda w: ["prepare", "--sales", w / "orders.csv", "--out", w / "r.parquet",
                                            "--history", "500"], ["orders.csv", "--history"]),
    ("prepare-tau-nan", lambda w: ["prepare", "--sales", w / "orders.csv", "--out", w / "r.parquet", "--tau", "nan"],
     ["tau"]),
    ("prepare-min-units-nan", lambda w: ["prepare", "--sales", w / "orders.csv", "--out", w / "r.parquet",
                                         "--min-history-units", "nan"], ["argument --min-history-units", "'nan'"]),
    ("prepare-texts-empty", lambda w: ["prepare", "--sales", w / "orders.csv", "--texts", w / "empty.csv", "--out",
                                       w / "r.parquet"], ["empty.csv", "texts"]),
    ("prepare-unknown-preset", lambda w: ["prepare", "--sales", w / "orders.csv", "--preset", "amazon", "--out",
                                          w / "r.parquet"], ["amazon"]),
    # ---- prepare: outputs
    ("prepare-out-under-file", lambda w: ["prepare", "--sales", w / "orders.csv", "--out", w / "afile" / "r.parquet"],
     ["--out", "afile", "not a folder"]),
    ("prepare-out-readonly", lambda w: ["prepare", "--sales", w / "orders.csv", "--out", w / "readonly" / "r.parquet"],
     ["--out", "readonly", "not writable"]),
    ("prepare-out-is-input", lambda w: ["prepare", "--sales", w / "orders.csv", "--out", w / "." / "orders.csv"],
     ["--out", "--sales", "same file"]),
    ("prepare-out-unknown-type", lambda w: ["prepare", "--sales", w / "orders.csv", "--out", w / "r.txt"], [".txt"]),
    # ---- options
    ("usage-unknown-option", lambda w: ["prepare", "--sales", w / "orders.csv", "--out", w / "r.csv", "--bogus"],
     ["--bogus", "--help"]),
    ("usage-bad-int", lambda w: ["prepare", "--sales", w / "orders.csv", "--out", w / "r.csv", "--stride", "two"],
     ["--stride", "two"]),
    ("usage-no-verb", lambda w: [], ["trendnlp", "--help"]),
    ("usage-unknown-verb", lambda w: ["fly"], ["fly"]),
    # ---- train: config
    ("train-epochs-zero", lambda w: train_args(w, "--set", "train.epochs=0"), ["train.epochs", "0"]),
    ("train-lr-negative", lambda w: train_args(w, "--set", "train.lr=-1e-3"), ["train.lr", "-0.001"]),
    ("train-encoder-lr-zero", lambda w: train_args(w, "--set", "train.encoder_lr=0"), ["train.encoder_lr"]),
    ("train-lr-nan", lambda w: train_args(w, "--set", "train.lr=.nan"), ["train.lr", "nan"]),
    ("train-batch-zero", lambda w: train_args(w, "--set", "train.batch_size=0"), ["train.batch_size"]),
    ("train-warmup-above-one", lambda w: train_args(w, "--set", "train.warmup_ratio=1.5"), ["train.warmup_ratio"]),
    ("train-dropout-one", lambda w: train_args(w, "--set", "sales.dropout=1"), ["sales.dropout"]),
    ("train-epochs-bool", lambda w: train_args(w, "--set", "train.epochs=true"), ["epochs", "True"]),
    ("train-lr-text", lambda w: train_args(w, "--set", "train.lr=fast"), ["lr", "fast"]),
    ("train-unknown-key", lambda w: train_args(w, "--set", "train.lerning_rate=1"), ["lerning_rate"]),
    ("train-set-without-equals", lambda w: train_args(w, "--set", "train.lr"), ["--set", "train.lr"]),
    ("train-config-missing", lambda w: ["train", "--config", w / "nope.yaml", "--output-dir", w / "run"],
     ["nope.yaml"]),
    ("train-config-not-yaml", lambda w: ["train", "--config", w / "notyaml.yaml", "--output-dir", w / "run"],
     ["notyaml.yaml", "YAML"]),
    ("train-config-not-mapping", lambda w: ["train", "--config", w / "list.yaml", "--output-dir", w / "run"],
     ["list.yaml", "mapping"]),
    ("train-data-missing", lambda w: train_args(w, "--set", f"data.train={w / 'nope.jsonl'}"), ["nope.jsonl"]),
    ("train-data-empty", lambda w: train_args(w, "--set", f"data.train={w / 'empty.jsonl'}"), ["empty.jsonl", "empty"]),
    ("train-data-unlabeled", lambda w: train_args(w, "--set", f"data.train={w / 'unlabeled.jsonl'}"),
     ["unlabeled.jsonl", "label"]),
    ("train-base-hub-name", lambda w: train_args(w, "--set", "text.base_model=bert-base-uncased"),
     ["bert-base-uncased", "neither an installed package nor a local folder"]),
    ("train-base-hub-org-name", lambda w: train_args(w, "--set", "text.base_model=google/bert-tiny-xyz"),
     ["google/bert-tiny-xyz", "never downloads"]),
    ("train-base-missing-folder", lambda w: train_args(w, "--set", f"text.base_model={w / 'no_bert'}"),
     ["no_bert", "no such folder"]),
    ("train-output-dir-is-file", lambda w: ["train", "--config", w / "config.yaml", "--output-dir", w / "afile"],
     ["--output-dir", "afile"]),
    ("train-output-dir-readonly", lambda w: ["train", "--config", w / "config.yaml", "--output-dir",
                                             w / "readonly" / "run"], ["--output-dir", "not writable"]),
    ("train-resume-nothing", lambda w: train_args(w, "--resume"), ["checkpoint"]),
    # ---- evaluate: broken model folders
    ("evaluate-model-missing", lambda w: evaluate_args(str(w / "no_model"), w), ["no_model", "config.json"]),
    ("evaluate-truncated-weights", lambda w: evaluate_args(broken_model(w, "tw", lambda d: truncate(
        d / "model.safetensors")), w), ["model.safetensors", "truncated"]),
    ("evaluate-truncated-adapter", lambda w: evaluate_args(broken_model(w, "ta", lambda d: truncate(
        d / "adapter" / "adapter_model.safetensors")), w), ["adapter_model.safetensors", "truncated"]),
    ("evaluate-missing-adapter-config", lambda w: evaluate_args(broken_model(w, "mac", lambda d: (
        d / "adapter" / "adapter_config.json").unlink()), w), ["adapter/adapter_config.json", "missing"]),
    ("evaluate-config-not-json", lambda w: evaluate_args(broken_model(w, "cnj", lambda d: (
        d / "config.json").write_text("{oops")), w), ["config.json", "JSON"]),
    ("evaluate-config-not-object", lambda w: evaluate_args(broken_model(w, "cno", lambda d: (
        d / "config.json").write_text("[1, 2]")), w), ["config.json", "object"]),
    ("evaluate-config-lacks-keys", lambda w: evaluate_args(broken_model(w, "clk", lambda d: (
        d / "config.json").write_text("{}")), w), ["config.json", "missing key"]),
    ("evaluate-config-bad-value", lambda w: evaluate_args(broken_model(w, "cbv", lambda d: edit_config(
        d, lambda m: m["config"]["train"].__setitem__("epochs", 0))), w), ["config.json", "train.epochs"]),
    ("evaluate-config-sizes-changed", lambda w: evaluate_args(broken_model(w, "csc", lambda d: edit_config(
        d, lambda m: m["config"]["sales"].__setitem__("hidden_size", 8))), w), ["model.safetensors", "do not match"]),
    ("evaluate-lora-rank-changed", lambda w: evaluate_args(broken_model(w, "lrc", lambda d: edit_config(
        d, lambda m: m["config"]["text"].__setitem__("lora_r", 4))), w), ["adapter_model.safetensors"]),
    ("evaluate-missing-tokenizer-json", lambda w: evaluate_args(broken_model(w, "mtj", lambda d: (
        d / "tokenizer" / "tokenizer.json").unlink()), w), ["tokenizer/tokenizer.json", "missing"]),
    ("evaluate-truncated-tokenizer-json", lambda w: evaluate_args(broken_model(w, "ttj", lambda d: truncate(
        d / "tokenizer" / "tokenizer.json", 200)), w), ["tokenizer", "unreadable"]),
    ("evaluate-weights-of-another-model", lambda w: evaluate_args(broken_model(w, "wam", lambda d: shutil.copy(
        w / "broken" / "wam" / "adapter" / "adapter_model.safetensors", d / "model.safetensors")), w),
     ["model.safetensors", "do not match"]),
    ("evaluate-config-bad-type", lambda w: evaluate_args(broken_model(w, "cbt", lambda d: edit_config(
        d, lambda m: m["config"]["text"].__setitem__("enabled", "maybe"))), w), ["config.json", "enabled", "maybe"]),
    ("evaluate-base-outside-folder", lambda w: evaluate_args(broken_model(w, "bof", lambda d: edit_config(
        d, lambda m: m["config"]["text"].__setitem__("base_model", "../../model"))), w),
     ["config.json", "outside the model folder"]),
    ("evaluate-base-hub-name", lambda w: evaluate_args(broken_model(w, "bhn", lambda d: edit_config(
        d, lambda m: m["config"]["text"].__setitem__("base_model", "bert-base-uncased"))), w),
     ["bert-base-uncased", "never downloads"]),
    ("evaluate-newer-format", lambda w: evaluate_args(broken_model(w, "nf", lambda d: edit_config(
        d, lambda m: m.__setitem__("format_version", 99))), w), ["config.json", "format_version"]),
    # ---- evaluate: malformed records
    ("evaluate-data-empty", lambda w: evaluate_args(str(w / "model"), w, str(w / "empty.jsonl")), ["empty.jsonl"]),
    ("evaluate-data-unlabeled", lambda w: evaluate_args(str(w / "model"), w, str(w / "unlabeled.jsonl")),
     ["labelled"]),
    ("evaluate-cutoff-garbage", lambda w: evaluate_args(str(w / "model"), w, records_file(w, "cg.jsonl", [
        {"product_id": "a", "sales": [1, 2], "cutoff": "2011-06-05-garbage", "label": "rising"}])),
     ["cg.jsonl", "row 1", "cutoff", "2011-06-05-garbage"]),
    ("evaluate-cutoff-bad-time", lambda w: evaluate_args(str(w / "model"), w, records_file(w, "ct.jsonl", [
        {"product_id": "a", "sales": [1, 2], "cutoff": "2011-06-05T99:99", "label": "rising"}])),
     ["ct.jsonl", "cutoff"]),
    ("evaluate-bool-sales", lambda w: evaluate_args(str(w / "model"), w, records_file(w, "bs.jsonl", [
        {"product_id": "a", "sales": [1, True], "label": "rising"}])), ["bs.jsonl", "sales", "boolean"]),
    ("evaluate-sales-not-list", lambda w: evaluate_args(str(w / "model"), w, records_file(w, "sn.jsonl", [
        {"product_id": "a", "sales": 5, "label": "rising"}])), ["sn.jsonl", "sales", "list"]),
    ("evaluate-malformed-json", lambda w: evaluate_args(str(w / "model"), w, str(_write(
        w / "mj.jsonl", '{"product_id": "a", "sales": [1]\n'))), ["mj.jsonl", "row 1", "JSON"]),
    ("evaluate-csv-header-not-utf8", lambda w: evaluate_args(str(w / "model"), w, str(w / "latin_header.csv")),
     ["latin_header.csv", "UTF-8"]),
    ("evaluate-out-under-file", lambda w: ["evaluate", "--model", w / "model", "--data", w / "good.jsonl", "--out",
                                           w / "afile" / "eval"], ["--out", "afile"]),
    # ---- prepare / label --sales: order logs that do not fit
    ("prepare-one-partial-week", lambda w: ["prepare", "--sales", stamps_log(w / "one_week.csv", ONE_PARTIAL_WEEK),
                                            "--out", w / "r.parquet"],
     ["one_week.csv", "'timestamp'", "0 complete W periods", "history + horizon = 30"]),
    ("prepare-one-full-week", lambda w: ["prepare", "--sales", stamps_log(w / "one_full_week.csv", [
        "2024-01-01", "2024-01-03", "2024-01-07"]), "--out", w / "r.parquet"],
     ["one_full_week.csv", "'timestamp'", "1 complete W periods", "history + horizon"]),
    ("prepare-as-of-one-partial-week", lambda w: ["prepare", "--sales", stamps_log(w / "one_week.csv",
                                                  ONE_PARTIAL_WEEK), "--as-of", "--out", w / "r.parquet"],
     ["one_week.csv", "'timestamp'", "at least 1"]),
    ("prepare-market-overflow", lambda w: ["prepare", "--sales", market_overflow(w / "market.csv"), "--out",
                                           w / "r.parquet", "--history", "2", "--horizon", "1"],
     ["market.csv", "'units'", "all products", "infinity"]),
    ("prepare-price-overflow", lambda w: ["prepare", "--sales", price_overflow(w / "pricey.csv"), "--price-col",
                                          "price", "--out", w / "r.parquet", "--history", "2", "--horizon", "1"],
     ["pricey.csv", "'price'", "'A'", "infinite"]),
    ("label-sales-one-partial-week", lambda w: ["label", "--model", w / "model", "--sales", stamps_log(
        w / "one_week.csv", ONE_PARTIAL_WEEK), "--output", w / "t.csv", "--no-progress"],
     ["one_week.csv", "'timestamp'", "0 complete"]),
    ("label-non-numeric-change", lambda w: label_args(w, inp=_write(w / "change.jsonl", json.dumps(
        {"product_id": "a", "sales": [1, 2]}) + "\n" + json.dumps({"product_id": "b", "sales": [1], "change": "up"})
        + "\n")), ["change.jsonl: row 2", "field 'change'", "'up'"]),
    # ---- label
    ("label-output-is-input", lambda w: label_args(w, out=str(w / "." / "good.jsonl")), ["--output", "same file"]),
    ("label-output-is-input-csv", lambda w: label_args(w, inp=str(w / "good.csv"), out=str(w / "good.csv")),
     ["--output", "same file"]),
    ("label-errors-is-input", lambda w: label_args(w, None, None, None, "--on-error", "skip", "--errors",
                                                   str(w / "good.jsonl")), ["--errors", "same file"]),
    ("label-output-under-file", lambda w: label_args(w, out=str(w / "afile" / "labels.csv")), ["--output", "afile"]),
    ("label-output-readonly", lambda w: label_args(w, out=str(w / "readonly" / "labels.csv")),
     ["--output", "not writable"]),
    ("label-output-unknown-type", lambda w: label_args(w, out=str(w / "labels.xlsx")), [".xlsx"]),
    ("label-window-zero", lambda w: label_args(w, None, None, None, "--window", "0"), ["window"]),
    ("label-input-missing", lambda w: label_args(w, inp=str(w / "nope.jsonl")), ["nope.jsonl"]),
    ("label-truncated-weights", lambda w: label_args(w, broken_model(w, "ltw", lambda d: truncate(
        d / "model.safetensors", 1000))), ["model.safetensors"]),
    ("label-bad-row", lambda w: label_args(w, inp=records_file(w, "neg.jsonl", [
        {"product_id": "a", "sales": [1, 2]}, {"product_id": "b", "sales": [1, -2]}])),
     ["neg.jsonl", "row 2", "'b'", "sales", "negative"]),
    ("label-leftovers-of-another-model", lambda w: label_args(w, out=_leftovers(w)), ["unfinished labeling run",
                                                                                     "--no-resume"]),
    ("label-damaged-manifest", lambda w: label_args(w, out=_damaged_manifest(w)), ["manifest", "--no-resume"]),
    ("label-min-confidence-above-1", lambda w: label_args(w, None, None, None, "--min-confidence", "1.5"),
     ["min_confidence", "1.5"]),
    ("label-onnx-not-exported", lambda w: label_args(w, None, None, None, "--backend", "onnx"),
     ["model.onnx", "trendnlp export"]),
    # ---- label --sales (an order log as of a date)
    ("label-sales-and-input", lambda w: label_args(w, None, None, None, "--sales", w / "orders.csv"),
     ["--input", "--sales"]),
    ("label-sales-as-of-after-log", lambda w: sales_label_args(w, "--as-of", "2099-01-01"), ["--as-of", "2099-01-01"]),
    ("label-sales-as-of-garbage", lambda w: sales_label_args(w, "--as-of", "2024-13-45"), ["--as-of", "2024-13-45"]),
    ("label-sales-empty-log", lambda w: sales_label_args(w, sales=w / "empty.csv"), ["empty.csv", "empty"]),
    ("label-sales-output-is-log", lambda w: sales_label_args(w, out=w / "orders.csv"), ["--output", "same file"]),
    # ---- prepare --as-of, train --init-from
    ("prepare-as-of-garbage", lambda w: ["prepare", "--sales", w / "orders.csv", "--as-of", "soon", "--out",
                                         w / "r.parquet"], ["--as-of", "soon"]),
    ("train-init-from-missing", lambda w: train_args(w, "--init-from", str(w / "no_model")), ["no_model"]),
    ("train-init-from-other-architecture", lambda w: train_args(w, "--init-from", str(w / "model"), "--set",
                                                                "sales.hidden_size=5"), ["sales.hidden_size"]),
    # ---- explain
    ("explain-model-missing", lambda w: ["explain", "--model", w / "no_model", "--input", w / "good.jsonl",
                                         "--output", w / "why.jsonl"], ["no_model"]),
    ("explain-bad-row", lambda w: ["explain", "--model", w / "model", "--input", records_file(
        w, "neg2.jsonl", [{"product_id": "a", "sales": [1, 2]}, {"product_id": "b", "sales": [1, -2]}]),
        "--output", w / "why.jsonl"], ["neg2.jsonl", "row 2", "sales"]),
    ("explain-output-under-file", lambda w: ["explain", "--model", w / "model", "--input", w / "good.jsonl",
                                             "--output", w / "afile" / "why.jsonl"], ["--output", "afile"]),
    ("explain-output-is-input", lambda w: ["explain", "--model", w / "model", "--input", w / "good.jsonl",
                                           "--output", w / "good.jsonl"], ["--output", "same file"]),
    ("explain-truncated-weights", lambda w: ["explain", "--model", broken_model(w, "etw", lambda d: truncate(
        d / "model.safetensors", 1000)), "--input", w / "good.jsonl", "--output", w / "why.jsonl"],
     ["model.safetensors"]),
    # ---- export, serve
    ("export-model-missing", lambda w: ["export", "--model", w / "no_model", "--format", "onnx"], ["no_model"]),
    ("export-out-under-file", lambda w: ["export", "--model", w / "model", "--self-contained", "--out",
                                         w / "afile" / "m"], ["--out", "afile"]),
    ("export-truncated-config", lambda w: ["export", "--model", broken_model(w, "xtc", lambda d: truncate(
        d / "config.json", 20)), "--format", "onnx"], ["config.json"]),
    ("serve-model-missing", lambda w: ["serve", "--model", w / "no_model", "--port", "1"], ["no_model"]),
    ("serve-truncated-weights", lambda w: ["serve", "--model", broken_model(w, "stw", lambda d: truncate(
        d / "model.safetensors", 1000)), "--port", "1"], ["model.safetensors"]),
    # ---- benchmark
    ("benchmark-no-data", lambda w: ["benchmark", "--out", w / "bench"], ["--sales"]),
    ("benchmark-records-missing", lambda w: ["benchmark", "--records", w / "nope.parquet", "--out", w / "bench",
                                             "--no-progress"], ["nope.parquet"]),
    ("benchmark-sales-empty", lambda w: ["benchmark", "--sales", w / "empty.csv", "--out", w / "bench",
                                         "--no-progress"], ["empty.csv", "empty"]),
    ("benchmark-out-under-file", lambda w: ["benchmark", "--sales", w / "orders.csv", "--out", w / "afile" / "b"],
     ["--out", "afile"]),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _leftovers(w: Path) -> str:
    """The parts folder of a labeling run that another model started and that died after its first window."""
    from trendnlp.inference.labeling import label_file

    other = broken_model(w, "other", lambda d: edit_config(d, lambda m: m.__setitem__("note", "another model")))
    out = w / "left" / "labels.csv"
    shutil.rmtree(out.parent, ignore_errors=True)
    calls = []

    def die_on_second_window(records, probs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands in for kill -9: nothing after this point runs
        return {}

    with pytest.raises(KeyboardInterrupt):
        label_file(other, w / "good.jsonl", out, window=4, progress=False, extra_columns=die_on_second_window)
    assert (out.with_name(out.name + ".parts") / "manifest-0.json").exists() and not out.exists()
    return str(out)


def _damaged_manifest(w: Path) -> str:
    out = w / "dm" / "labels.csv"
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    (parts / "manifest-0.json").write_text('{"fingerprint": {"inp')  # cut off mid-write by a foreign tool
    return str(out)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_failure_is_one_named_line(case, world, capsys):
    _, argv, needles = case
    line = cli_error(argv(world), capsys)
    assert "error:" in line, line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"


def test_case_ids_are_unique():
    assert len({c[0] for c in CASES}) == len(CASES)


# ---- row accounting under --on-error skip ----------------------------------------------------------------
def test_prepare_skip_reports_every_bad_line(world, capsys):
    def damage(df):
        df.loc[3, "timestamp"] = "not a date"
        df.loc[7, "units"] = -1
        df.loc[8, "units"] = "lots"
        df.loc[11, "product_id"] = ""

    log = orders_file(world, "orders_bad.csv", damage)
    out = world / "skip" / "records.jsonl"
    line = cli_error(["prepare", "--sales", log, "--out", out], capsys)  # stops at one bad row, names it
    assert "orders_bad.csv: row " in line
    assert main(["prepare", "--sales", log, "--out", str(out), "--on-error", "skip"]) == 0
    errors = pd.read_csv(world / "skip" / "records.errors.csv")
    assert errors["row"].tolist() == [5, 9, 10, 13]  # CSV lines (header = 1), in file order
    assert errors["field"].tolist() == ["timestamp", "units", "units", "product_id"]
    assert "4 bad input rows skipped" in capsys.readouterr().out


def test_label_skip_accounts_for_every_row(world, capsys):
    rows = [{"product_id": f"x{i}", "sales": [1, i]} for i in range(6)]
    rows[2]["sales"] = [1, True]
    rows[4]["cutoff"] = "2011-06-05-garbage"
    inp = records_file(world, "mixed.jsonl", rows + [rows[0]])  # and a duplicate
    out, errs = world / "acc" / "labels.csv", world / "acc" / "errors.csv"
    assert main(label_args(world, None, inp, str(out), "--on-error", "skip", "--errors", str(errs))) == 0
    got, bad = pd.read_csv(out), pd.read_csv(errs)
    assert len(got) + len(bad) == 7
    assert got["product_id"].tolist() == ["x0", "x1", "x3", "x5"]
    assert bad["row"].tolist() == [3, 5, 7] and bad["field"].tolist() == ["sales", "cutoff", "product_id"]


# ---- the handler itself -------------------------------------------------------------------------------
def test_unexpected_errors_get_a_summary_and_debug_shows_the_traceback(world, capsys, monkeypatch):
    import trendnlp.cli as cli

    def boom(args):
        raise RuntimeError("something internal")

    monkeypatch.setattr(cli, "cmd_prepare", boom)
    argv = ["prepare", "--sales", str(world / "orders.csv"), "--out", str(world / "r.parquet")]
    line = cli_error(argv, capsys, understood=False)
    assert "unexpected RuntimeError: something internal" in line and "--debug" in line
    with pytest.raises(RuntimeError, match="something internal"):
        main(["--debug", *argv])
    with pytest.raises(RuntimeError):
        main([*argv, "--debug"])  # anywhere on the line


@pytest.mark.parametrize("argv", [
    ["prepare", "--sales", "{w}/latin.csv", "--out", "{w}/r.parquet"],
    ["evaluate", "--model", "{w}/broken/tw", "--data", "{w}/good.jsonl", "--out", "{w}/e"],
    ["label", "--model", "{w}/model", "--input", "{w}/good.jsonl", "--output", "{w}/good.jsonl"],
    ["train", "--config", "{w}/config.yaml", "--output-dir", "{w}/run", "--set", "text.base_model=bert-base-uncased"],
], ids=["prepare", "evaluate", "label", "train"])
def test_real_process_prints_one_line_and_exits_2(world, argv):
    broken_model(world, "tw", lambda d: truncate(d / "model.safetensors"))
    cmd = [sys.executable, "-m", "trendnlp", *[a.format(w=world) for a in argv]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=120)
    err_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert len(err_lines) == 1 and err_lines[0].startswith(f"trendnlp {argv[0]}: error: "), proc.stderr


# ---- interrupted training, through the CLI ----------------------------------------------------------------
def test_cli_resume_with_another_config_is_one_line_and_resume_anyway_runs(tiny_config, data_files, tmp_path,
                                                                           capsys):
    from trendnlp.training import train

    raw = tiny_config.to_dict()
    raw["data"].update(data_files)
    raw["train"].update(epochs=1, save_steps=2, max_steps=4)
    TrendConfig.from_dict(raw).save_yaml(tmp_path / "config.yaml")
    run = tmp_path / "run"

    def stop(step, model, accelerator):
        if step == 2:
            raise KeyboardInterrupt  # a Ctrl-C after the step-2 checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(TrendConfig.from_yaml(tmp_path / "config.yaml"), run, progress=False, on_step=stop)
    argv = ["train", "--config", tmp_path / "config.yaml", "--output-dir", run, "--no-progress", "--resume",
            "--set", "train.lr=0.05"]
    line = cli_error(argv, capsys)
    assert "train.lr: 0.001 -> 0.05" in line and "--resume-anyway" in line
    assert main([str(a) for a in argv if a != "--resume"] + ["--resume-anyway"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "trendnlp train: warning: resuming" in err  # one line, not a Python warning
    assert json.loads((run / "model" / "metrics.json").read_text())["step"] == 4
