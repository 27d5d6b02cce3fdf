"""Locked outputs (trendnlp.outputs): a second run on an output another trendnlp run is writing is refused at once
in one line naming the option and the path, two runs at once leave one complete output, and the lock is released.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import cli_error, subprocess_env
from trendnlp.data.record_files.io import write_records


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
    line = cli_error(argv(world), capsys)
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
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
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
        other = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=subprocess_env())
        assert other.returncode == 1 and "OutputLockedError" in other.stderr
    assert subprocess.run([sys.executable, "-c", code, str(out)], env=subprocess_env()).returncode == 0  # released
    assert issubclass(OutputLockedError, OSError)
