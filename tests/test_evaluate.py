"""`trendnlp evaluate` (evaluation/evaluate.py): scoring a saved model on labelled records."""
from __future__ import annotations

import json

import pandas as pd

from conftest import cli_error
from trendnlp.cli import main
from trendnlp.data.record_files.io import write_records


def test_evaluate_refuses_a_record_without_a_channel_the_model_reads(channel_model_dir, channel_records, tmp_path,
                                                                     capsys):
    """A labelled row without `price`, which the model reads, is refused naming file, row, channel and fix, before
    anything is written; --on-error skip scores the other rows and lists it in errors.csv."""
    rows = [dict(r) for r in channel_records[:30]]
    rows[4]["price"] = None
    data, out = tmp_path / "test.csv", tmp_path / "eval"
    write_records(rows, data)
    err = cli_error(["evaluate", "--model", channel_model_dir, "--data", data, "--out", out], capsys)
    # rows are numbered as the file's lines: the CSV header is line 1, so the fifth record is row 6
    assert f"{data}: row 6 (product_id='{rows[4]['product_id']}'): field 'price': missing, but the model reads the " \
           "`price` channel" in err and "--set sales.price_channels=false" in err
    assert not out.exists()
    assert main(["evaluate", "--model", str(channel_model_dir), "--data", str(data), "--out", str(out),
                 "--on-error", "skip"]) == 0
    assert json.loads((out / "metrics.json").read_text())["n"] == 29
    assert pd.read_csv(out / "errors.csv")[["row", "field"]].values.tolist() == [[6, "price"]]
