"""Batch labeling: formats, bad rows, resume after kill -9, 2-process sharding, bf16, merged LoRA."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_records, save_model, subprocess_env
from trendnlp.inference.labeling import KeySet, ResumeMismatchError, label_file
from trendnlp.model.classifier import TrendClassifier
from trendnlp.data.record_files.io import write_records
from trendnlp.data.record_files.io import RecordError
from trendnlp.errors import OutputPathError

REPO = Path(__file__).resolve().parents[1]
PROBS = ["p_rising", "p_falling", "p_stable"]
FORMATS = ["jsonl", "csv", "parquet"]


def read(path: Path) -> pd.DataFrame:
    fmt = path.suffix[1:]
    if fmt == "csv":
        return pd.read_csv(path, dtype={"product_id": str})
    if fmt == "jsonl":
        return pd.read_json(path, lines=True, dtype={"product_id": str})
    return pd.read_parquet(path)


@pytest.fixture(scope="module")
def model_dir(tiny_config, sample_records, tmp_path_factory) -> Path:
    return save_model(tiny_config, sample_records, tmp_path_factory.mktemp("label_model") / "model")


@pytest.fixture(scope="module")
def model(model_dir) -> TrendClassifier:
    return TrendClassifier.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> dict[str, Path]:
    """1,200 records (150 products x 8 cutoffs) in each input format."""
    d = tmp_path_factory.mktemp("catalog")
    recs = make_records(150, 8, seed=1)
    out = {}
    for fmt in FORMATS:
        out[fmt] = d / f"catalog.{fmt}"
        write_records(recs, out[fmt])
    return out


@pytest.mark.parametrize("in_fmt", FORMATS)
@pytest.mark.parametrize("out_fmt", FORMATS)
def test_every_row_once_with_probabilities(model, catalog, tmp_path, in_fmt, out_fmt):
    out = tmp_path / f"labels.{out_fmt}"
    summary = label_file(model, catalog[in_fmt], out, window=256, batch_size=16, progress=False)
    df = read(out)
    assert list(df.columns) == ["product_id", "cutoff", "label"] + PROBS
    assert summary["rows_written"] == len(df) == 1200 and summary["errors_written"] == 0
    assert not df.duplicated(["product_id", "cutoff"]).any()
    np.testing.assert_allclose(df[PROBS].sum(axis=1), 1.0, atol=1e-6)
    assert (df["label"] == np.array(model.labels)[df[PROBS].to_numpy().argmax(1)]).all()
    expected = model.predict_proba(catalog["jsonl"])  # same rows, same order
    np.testing.assert_allclose(df[PROBS].to_numpy(), expected, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no parts, trash or temporary files left


@pytest.mark.parametrize("sections", [{"fusion": {"method": "cross_attention"}}, {"fusion": {"method": "concat"}},
                                      {"text": {"enabled": False}}], ids=["cross_attention", "concat", "sales_only"])
def test_other_model_shapes_match_predict_proba(tiny_config, sample_records, catalog, tmp_path, sections):
    model = TrendClassifier.from_pretrained(save_model(tiny_config, sample_records, tmp_path / "m", **sections))
    label_file(model, catalog["parquet"], tmp_path / "out.parquet", window=300, batch_size=8, progress=False)
    got = read(tmp_path / "out.parquet")[PROBS].to_numpy()
    np.testing.assert_allclose(got, model.predict_proba(catalog["parquet"]), atol=1e-5)


def bad_catalog(path: Path) -> tuple[list[str], set[int]]:
    """JSONL with bad lines at known rows; returns all lines' product ids and the bad line numbers."""
    recs = make_records(20, 3, seed=2)
    lines = [json.dumps(r) for r in recs]
    lines[4] = json.dumps({**recs[4], "sales": [1.0, -2.0]})  # negative units
    lines[9] = json.dumps({k: v for k, v in recs[9].items() if k != "product_id"})  # no id
    lines[17] = "{not json"
    lines[30] = json.dumps(recs[29])  # duplicate (product_id, cutoff)
    lines[41] = json.dumps({**recs[41], "label": "soaring"})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [r["product_id"] for r in recs], {5, 10, 18, 31, 42}


def test_bad_row_raises_with_file_row_field(model, tmp_path):
    _, bad = bad_catalog(tmp_path / "bad.jsonl")
    with pytest.raises(RecordError) as err:
        label_file(model, tmp_path / "bad.jsonl", tmp_path / "out.csv", window=4, progress=False)
    assert "bad.jsonl" in str(err.value) and err.value.row == 5 and err.value.field == "sales"


def test_skip_writes_every_bad_row_to_errors(model, tmp_path):
    _, bad = bad_catalog(tmp_path / "bad.jsonl")
    n_lines = 60
    summary = label_file(model, tmp_path / "bad.jsonl", tmp_path / "out.csv", on_error="skip",
                         errors=tmp_path / "errors.jsonl", window=7, progress=False)
    out, errs = read(tmp_path / "out.csv"), pd.read_json(tmp_path / "errors.jsonl", lines=True)
    assert set(errs["row"]) == bad and len(errs) == len(bad)
    assert len(out) + len(errs) == n_lines == summary["rows_read"]
    assert set(errs["field"]) == {"sales", "product_id", "(line)", "label"}
    assert not out.duplicated(["product_id", "cutoff"]).any()


def run_cli(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trendnlp.inference.labeling", *args, "--no-progress"], cwd=REPO, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_resume_after_kill_gives_each_row_once(model, model_dir, tmp_path):
    src = tmp_path / "big.jsonl"
    write_records(make_records(250, 8, seed=3), src)  # 2,000 rows, 50 windows of 40
    out, reference = tmp_path / "labels.csv", tmp_path / "reference.csv"
    label_file(model, src, reference, window=40, batch_size=8, progress=False)
    args = ["--model", str(model_dir), "--input", str(src), "--output", str(out), "--window", "40", "--batch-size", "8"]

    proc = run_cli(args)
    manifest = tmp_path / "labels.csv.parts" / "manifest-0.json"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(manifest.read_text())["next_window"] >= 5:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.005)
    assert proc.poll() is None, "labeling finished before it could be killed; make the input larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and list(manifest.parent.glob("part-0-*.csv"))

    proc = run_cli(args)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["windows_resumed"] >= 5 and not manifest.parent.exists()
    got, ref = read(out), read(reference)
    assert len(got) == 2000 and not got.duplicated(["product_id", "cutoff"]).any()
    pd.testing.assert_frame_equal(got[["product_id", "cutoff", "label"]], ref[["product_id", "cutoff", "label"]])
    np.testing.assert_allclose(got[PROBS].to_numpy(), ref[PROBS].to_numpy(), atol=1e-6)


def test_resume_refuses_other_options(model, catalog, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad_catalog(bad)
    with pytest.raises(RecordError):  # stops at row 5, leaving the first committed window behind
        label_file(model, bad, tmp_path / "out.csv", window=2, progress=False)
    assert (tmp_path / "out.csv.parts" / "manifest-0.json").exists()
    with pytest.raises(ResumeMismatchError, match="no-resume"):
        label_file(model, bad, tmp_path / "out.csv", window=3, progress=False)
    summary = label_file(model, bad, tmp_path / "out.csv", window=3, on_error="skip", resume=False, progress=False)
    assert summary["rows_written"] + summary["errors_written"] == 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(model_dir, catalog, tmp_path):
    out1, out2 = tmp_path / "one.parquet", tmp_path / "two.parquet"
    label_file(model_dir, catalog["csv"], out1, window=100, progress=False)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--num_cpu_threads_per_process", "1", "--main_process_port", str(free_port()),
           "-m", "trendnlp.inference.labeling", "--model", str(model_dir), "--input", str(catalog["csv"]),
           "--output", str(out2), "--window", "100", "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["num_shards"] == 2 and summary["merged"]
    a, b = read(out1), read(out2)
    pd.testing.assert_frame_equal(a[["product_id", "cutoff", "label"]], b[["product_id", "cutoff", "label"]])
    np.testing.assert_allclose(a[PROBS].to_numpy(), b[PROBS].to_numpy(), atol=1e-6)


def test_bf16_close_to_fp32(model, catalog, tmp_path):
    label_file(model, catalog["parquet"], tmp_path / "fp32.csv", progress=False)
    label_file(model, catalog["parquet"], tmp_path / "bf16.csv", dtype="bf16", progress=False)
    a, b = read(tmp_path / "fp32.csv"), read(tmp_path / "bf16.csv")
    np.testing.assert_allclose(a[PROBS].to_numpy(), b[PROBS].to_numpy(), atol=2e-2)


def test_merged_lora_equals_unmerged(model_dir, catalog, tmp_path):
    unmerged = TrendClassifier.from_pretrained(model_dir, merge_lora=False)
    assert unmerged.text_encoder.is_peft
    label_file(model_dir, catalog["jsonl"], tmp_path / "merged.csv", progress=False)
    label_file(unmerged, catalog["jsonl"], tmp_path / "unmerged.csv", progress=False)
    a, b = read(tmp_path / "merged.csv"), read(tmp_path / "unmerged.csv")
    np.testing.assert_allclose(a[PROBS].to_numpy(), b[PROBS].to_numpy(), atol=1e-5)


def test_text_cache_across_windows_changes_nothing(model, catalog, tmp_path):
    cached = label_file(model, catalog["parquet"], tmp_path / "cached.csv", window=100, text_cache=64,
                        progress=False)
    plain = label_file(model, catalog["parquet"], tmp_path / "plain.csv", window=100, text_cache=0, progress=False)
    assert cached["texts_cached"] > 0 and cached["texts_encoded"] < plain["texts_encoded"]
    assert plain["texts_cached"] == 0
    a, b = read(tmp_path / "cached.csv"), read(tmp_path / "plain.csv")
    np.testing.assert_allclose(a[PROBS].to_numpy(), b[PROBS].to_numpy(), atol=1e-6)


def test_extra_columns_hook(model, catalog, tmp_path):
    def extra(records, probs):
        return {"n_periods": [len(r["sales"]) for r in records], "margin": np.sort(probs, 1)[:, -1].tolist()}

    label_file(model, catalog["jsonl"], tmp_path / "out.parquet", extra_columns=extra, window=500, progress=False)
    df = read(tmp_path / "out.parquet")
    assert list(df.columns)[-2:] == ["n_periods", "margin"]
    np.testing.assert_allclose(df["margin"], df[PROBS].max(axis=1))


def test_key_set_finds_duplicates_across_flushes():
    keys = KeySet(flush=4)
    assert all(keys.add((f"p{i}", "2011-01-02")) for i in range(10))
    assert not keys.add(("p1", "2011-01-02")) and not keys.add(("p9", "2011-01-02"))
    assert keys.add(("p1", None)) and not keys.add(("p1", None))


def test_label_refuses_a_row_without_a_channel_the_model_reads(channel_model_dir, channel_records, tmp_path, capsys):
    """A catalog row without `orders`, which the model reads, is a bad row (not zeros): refused naming the file,
    row, channel and fix; with --on-error skip it goes to the errors file and the other rows are labelled."""
    from conftest import cli_error
    from trendnlp.cli import main

    rows = [dict(r) for r in channel_records[:5]]
    del rows[2]["orders"]
    rows[3]["price"] = [None] * len(rows[3]["sales"])  # a null inside the history is no lack
    catalog, out = tmp_path / "catalog.jsonl", tmp_path / "labels.csv"
    write_records(rows, catalog)
    err = cli_error(["label", "--model", channel_model_dir, "--input", catalog, "--output", out, "--no-progress"],
                    capsys)
    assert f"{catalog}: row 3 (product_id='{rows[2]['product_id']}'): field 'orders': missing, but the model reads " \
           "the `orders` channel" in err
    assert "give the record its `orders` history" in err and "--set 'sales.channels=[]'" in err
    assert not out.exists()
    assert main(["label", "--model", str(channel_model_dir), "--input", str(catalog), "--output", str(out),
                 "--on-error", "skip", "--no-resume", "--no-progress"]) == 0
    assert read(out)["product_id"].tolist() == [r["product_id"] for i, r in enumerate(rows) if i != 2]
    errors = pd.read_csv(tmp_path / "labels.errors.csv")
    assert errors[["row", "field"]].values.tolist() == [[3, "orders"]]


# ---- an empty catalog ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,content", [("none.jsonl", b""), ("none.csv", b""),
                                          ("header_only.csv", b"product_id,sales\n"), ("blank.jsonl", b"\n\n")])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_label_of_an_empty_catalog_writes_a_header_only_output(world, capsys, name, content, suffix):
    from trendnlp.cli import main

    inp = world / "empty_catalogs" / name
    inp.parent.mkdir(exist_ok=True)
    inp.write_bytes(content)
    out = world / "empty_catalogs" / f"labels_{name.replace('.', '_')}{suffix}"
    assert main(["label", "--model", str(world / "model"), "--input", str(inp), "--output", str(out),
                 "--no-progress"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "note:" in err[0] and "no records" in err[0] and str(inp) in err[0], err
    columns = ["product_id", "cutoff", "label", "p_rising", "p_falling", "p_stable"]
    if suffix == ".csv":
        assert out.read_text().splitlines() == [",".join(columns)]
    elif suffix == ".parquet":
        df = pd.read_parquet(out)
        assert len(df) == 0 and list(df.columns) == columns
    else:
        assert out.read_text() == ""
    assert not out.with_name(out.name + ".parts").exists()


def test_label_file_refuses_to_overwrite_its_input(lora_model_dir, tmp_path):
    inp = tmp_path / "catalog.jsonl"
    write_records(make_records(3, 1), inp)
    before = inp.read_bytes()
    with pytest.raises(OutputPathError, match="same file"):
        label_file(lora_model_dir, inp, tmp_path / "." / "catalog.jsonl", progress=False)
    assert inp.read_bytes() == before
