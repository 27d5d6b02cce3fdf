"""`prepare` at scale: the log read in batches and the records windowed in chunks give the records of one pass,
written records equal returned ones, and `--num-shards N` parts, run as N processes, equal the one-process
records; `train` / `benchmark` read a folder of parts; the synthetic order-log generator is deterministic."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trendnlp.cli import main
from trendnlp.data.orderlog import aggregate, windows
from trendnlp.data.orderlog.aggregate import Shard, shard_of
from trendnlp.data.record_files.io import RecordError
from trendnlp.data.record_files.parts import part_files, read_parts
from trendnlp.data.orderlog.prepare import prepare
from trendnlp.data.record_files.records import read_records

REPO = Path(__file__).parents[1]
CHANNEL_COLS = {"price_col": "price", "invoice_col": "invoice", "customer_col": "customer_id"}


def _generator():
    spec = importlib.util.spec_from_file_location("make_order_log", REPO / "scripts" / "make_order_log.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def order_log(tmp_path_factory) -> Path:
    """A 6,000-line synthetic shop log (two years, every channel's column) from the shipped generator."""
    path = tmp_path_factory.mktemp("log") / "orders.csv"
    _generator().write_log(path, lines=6000, seed=3, products=60, chunk=2500, texts=path.with_name("texts.csv"))
    return path


def key(r: dict) -> tuple:
    return r["product_id"], r["cutoff"]


def test_generator_is_deterministic_and_chunked(tmp_path, order_log):
    again = tmp_path / "again.csv"
    _generator().write_log(again, lines=6000, seed=3, products=60, chunk=2500, texts=None)
    assert again.read_bytes() == order_log.read_bytes()
    df = pd.read_csv(order_log)
    assert len(df) == 6000 and list(df.columns) == ["invoice", "product_id", "timestamp", "units", "price",
                                                    "customer_id"]
    assert df["customer_id"].isna().mean() > 0.05 and (df["units"] >= 1).all()
    days = pd.to_datetime(df["timestamp"])
    assert days.is_monotonic_increasing and (days.max() - days.min()).days > 700  # two years, in time order
    top = df["product_id"].value_counts()
    assert top.iloc[0] > 5 * top.median()  # Zipf: a few products sell far more lines than the median one


def test_batches_and_chunks_give_the_one_pass_records(order_log, monkeypatch):
    kw = dict(texts=order_log.with_name("texts.csv"), history=8, horizon=2, min_history_units=1, progress=False,
              **CHANNEL_COLS)
    whole = prepare(order_log, **kw).records
    assert len(whole) > 500 and all(r["orders"] is not None and r["customers"] is not None for r in whole)
    monkeypatch.setattr(aggregate, "ROWS_PER_BATCH", 777)  # 8 batches of log rows
    monkeypatch.setattr(windows, "RECORDS_PER_CHUNK", 50)  # one product (its cutoffs) per chunk
    assert prepare(order_log, **kw).records == whole  # same dicts, same order (cutoff, then product)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_written_records_equal_returned_ones(order_log, tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(windows, "RECORDS_PER_CHUNK", 200)
    kw = dict(history=8, horizon=2, min_history_units=1, progress=False, **CHANNEL_COLS)
    res = prepare(order_log, **kw)
    out = tmp_path / f"records{suffix}"
    written = prepare(order_log, out=out, **kw)
    assert written.records == [] and len(written) == len(res) and written.summary() == res.summary()
    back = read_records(out)
    assert sorted(back, key=key) == sorted(read_records(res.records), key=key)
    assert [key(r) for r in back] == sorted(key(r) for r in back)  # the file: by product, then cutoff


def test_as_of_records_written_in_chunks(order_log, tmp_path, monkeypatch):
    monkeypatch.setattr(windows, "RECORDS_PER_CHUNK", 1)
    res = prepare(order_log, as_of="latest", history=8, min_history_units=1, progress=False, **CHANNEL_COLS)
    assert res.records and all("label" not in r and "future_sales" not in r for r in res.records)
    prepare(order_log, as_of="latest", history=8, min_history_units=1, progress=False, out=tmp_path / "a.jsonl",
            **CHANNEL_COLS)
    assert sorted(read_records(tmp_path / "a.jsonl"), key=key) == sorted(read_records(res.records), key=key)


def test_four_shard_processes_equal_one_process(order_log, tmp_path):
    """`prepare --num-shards 4 --shard-index I`, four separate processes, then the parts read as one folder."""
    common = ["prepare", "--sales", str(order_log), "--texts", str(order_log.with_name("texts.csv")), "--history",
              "8", "--horizon", "2", "--min-history-units", "1", "--price-col", "price", "--invoice-col", "invoice",
              "--customer-col", "customer_id", "--no-progress"]
    assert main(common + ["--out", str(tmp_path / "one.parquet")]) == 0
    procs = [subprocess.Popen([sys.executable, "-m", "trendnlp", *common, "--num-shards", "4", "--shard-index",
                               str(i), "--out", str(tmp_path / "parts" / f"part-{i}.parquet")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    one = read_records(tmp_path / "one.parquet")
    parts = [read_records(p) for p in part_files(tmp_path / "parts")]
    assert len(parts) == 4 and all(parts)  # 4 non-empty parts ...
    assert not set.intersection(*[{r["product_id"] for r in p} for p in parts])  # ... of disjoint products
    assert sorted(read_parts(tmp_path / "parts"), key=key) == sorted(one, key=key)


def test_a_product_in_two_parts_is_an_error(tmp_path):
    recs = read_records(REPO / "data_samples" / "val.jsonl")
    (tmp_path / "parts").mkdir()
    pd.DataFrame(recs).to_json(tmp_path / "parts" / "part-0.jsonl", orient="records", lines=True)
    pd.DataFrame(recs[:3]).to_json(tmp_path / "parts" / "part-1.jsonl", orient="records", lines=True)
    with pytest.raises(RecordError, match="part-1.jsonl.*also in an earlier part.*same --shard-index"):
        read_parts(tmp_path / "parts")


def test_train_reads_a_folder_of_parts(order_log, tmp_path):
    from trendnlp.configs import default_config
    from trendnlp.config import TrendConfig
    from trendnlp.training.pipeline import records_for_training

    for i in range(2):
        assert main(["prepare", "--sales", str(order_log), "--history", "8", "--horizon", "4", "--num-shards", "2",
                     "--shard-index", str(i), "--no-progress", "--out", str(tmp_path / "p" / f"part-{i}.jsonl")]) == 0
    config = TrendConfig.from_yaml(default_config(None), overrides=["sales.history=8"])
    got = records_for_training(config, records=str(tmp_path / "p"))
    want = prepare(order_log, history=8, horizon=4, progress=False).records
    assert sorted(got, key=key) == sorted(read_records(want), key=key)


def test_shards_hash_stably_and_check_their_options():
    assert shard_of(["85123A", "22423"], 4).tolist() == [0, 3]  # blake2b: the same on every machine and run
    ids = np.array([f"P{i}" for i in range(1000)], dtype=object)
    masks = [Shard(i, 3).keep(ids) for i in range(3)]
    assert (np.sum(masks, axis=0) == 1).all() and min(m.sum() for m in masks) > 250
    with pytest.raises(ValueError, match="--shard-index"):
        Shard(4, 4)


def test_shard_index_out_of_range_is_one_line(order_log, tmp_path, capsys):
    assert main(["prepare", "--sales", str(order_log), "--num-shards", "2", "--shard-index", "2", "--out",
                 str(tmp_path / "x.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--shard-index" in err


def test_a_bad_row_in_a_later_batch_names_its_line(tmp_path, monkeypatch):
    monkeypatch.setattr(aggregate, "ROWS_PER_BATCH", 3)
    rows = [f"a,2024-01-0{1 + i % 7},{i}" for i in range(8)]
    rows[6] = "a,2024-01-05,-4"
    path = tmp_path / "log.csv"
    path.write_text("product_id,timestamp,units\n" + "\n".join(rows) + "\n")
    with pytest.raises(RecordError, match=r"log.csv: row 8: field 'units': units must be >= 0"):
        prepare(path, history=1, horizon=1, progress=False)
