"""`trendnlp serve` in production: batching, hot swap under load, the token, metrics, request ids, SIGTERM
drain, kill -9 and restart, and a soak with the server's memory watched. Real `trendnlp serve` processes on
127.0.0.1 driven by a real httpx client; bounded in requests and time."""
from __future__ import annotations

import copy
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from conftest import REPO, subprocess_env
from serving import rss_mb, server_process, start_server

from trendnlp.inference.batching import Batcher
from trendnlp.inference.model_service import folder_version
from trendnlp.model.classifier import TrendClassifier

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def as_json(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if v is not None} for r in records]


def save(config, records, folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    TrendClassifier(config).fit_feature_scaling(records).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tiny_config, sample_records, tmp_path_factory) -> dict[str, Path]:
    """Two good versions (other weights), a folder with broken weights, one with another history length."""
    root = tmp_path_factory.mktemp("serve_ops")
    a, b = save(tiny_config, sample_records, root / "a", 0), save(tiny_config, sample_records, root / "b", 1)
    broken = root / "broken"
    shutil.copytree(b, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    other = tiny_config.model_copy(deep=True)
    other.sales.history = tiny_config.sales.history - 2
    live = root / "live"  # the folder the server serves, updated in place before a SIGHUP
    shutil.copytree(a, live)
    token = root / "token.txt"
    token.write_text(TOKEN + "\n")
    return {"a": a, "b": b, "broken": broken, "other_history": save(other, sample_records, root / "other", 2),
            "live": live, "token": token, "root": root}


@pytest.fixture(scope="module")
def expected(folders, sample_records) -> dict[str, np.ndarray]:
    """version -> predict_proba of every sample record, for versions a and b."""
    records = as_json(sample_records)
    return {folder_version(folders[k]): TrendClassifier.from_pretrained(folders[k]).predict_proba(records)
            for k in ("a", "b")}


@pytest.fixture(scope="module")
def server(folders):
    log = folders["root"] / "server.log"
    with server_process(folders["live"], "--api-key-file", str(folders["token"]), "--max-wait-ms", "20",
                        "--max-batch-records", "16", log=log) as served:
        yield served


# ---- the batcher on its own ------------------------------------------------------------------------
def test_batcher_keeps_order_splits_batches_and_isolates_a_failing_request():
    calls = []

    def run(records):
        calls.append(len(records))
        if any(r.get("bad") for r in records):
            raise ValueError("bad record in this call")
        return [r["x"] * 10 for r in records], len(calls)

    gate = threading.Event()
    b = Batcher(lambda recs: (gate.wait(5), run(recs))[1], max_records=5, max_wait_ms=50)
    first = b.submit([{"x": 0}])  # holds the worker at the gate while the rest queue up
    time.sleep(0.1)
    futures = [b.submit([{"x": i}, {"x": i + 1}]) for i in (1, 3)] + [b.submit([{"bad": True, "x": 9}]),
                                                                        b.submit([{"x": 5}] * 7)]
    gate.set()
    assert first.result(5)[0] == [0]
    assert futures[0].result(5)[0] == [10, 20] and futures[1].result(5)[0] == [30, 40]  # each its own rows
    with pytest.raises(ValueError):
        futures[2].result(5)  # the failing request fails alone ...
    assert futures[3].result(5)[0] == [50] * 7  # ... and a request over max_records ran by itself
    assert max(calls[1:]) <= 7 and 5 in calls  # 2 + 2 + 1 batched together, then retried one by one
    b.stop()
    # a lone request (nothing else in flight) does not wait out max_wait_ms
    lone = Batcher(run, max_records=5, max_wait_ms=5000, in_flight=lambda: 1)
    t0 = time.perf_counter()
    assert lone.submit([{"x": 1}]).result(5)[0] == [10] and time.perf_counter() - t0 < 2
    lone.stop()


# ---- the door ------------------------------------------------------------------------------------
def test_token_metrics_and_request_ids(server, sample_records):
    url, _, log = server
    body = {"records": as_json(sample_records[:1])}
    assert httpx.get(f"{url}/health").status_code == 200  # open for probes
    for method, path in (("POST", "/v1/predict"), ("POST", "/v1/explain"), ("POST", "/v1/admin/reload"),
                         ("GET", "/v1/metadata"), ("GET", "/metrics")):
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
            r = httpx.request(method, f"{url}{path}", json=body if method == "POST" else None, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (path, headers, r.text)
    r = httpx.post(f"{url}/v1/predict", json=body, headers={**AUTH, "X-Request-ID": "page-42.a"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "page-42.a"
    own = httpx.post(f"{url}/v1/predict", json=body, headers={**AUTH, "X-Request-ID": "bad id; <x>"})
    assert own.status_code == 200 and len(own.headers["x-request-id"]) == 32  # a bad id is replaced by a new one
    time.sleep(0.3)
    lines = log.read_text().splitlines()
    assert any("[page-42.a]" in line and "/v1/predict" in line and "200" in line for line in lines), lines[-5:]

    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", headers=AUTH).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    count = {(s.labels["path"], s.labels["status"]): s.value for s in families["trendnlp_requests"].samples
             if s.name == "trendnlp_requests_total"}
    assert count[("/v1/predict", "401")] >= 3 and count[("/v1/predict", "200")] >= 2
    assert count[("/v1/admin/reload", "401")] >= 3
    info = [s for s in families["trendnlp_model_info"].samples][0].labels
    assert info["version"] == httpx.get(f"{url}/v1/metadata", headers=AUTH).json()["model_version"]
    assert {"trendnlp_batch_records", "trendnlp_request_seconds", "trendnlp_records"} <= set(families)


@pytest.mark.parametrize("options,message", [
    (["--host", "0.0.0.0"], "--allow-unauthenticated"),
    (["--api-key-file", "no/such/token.txt"], "--api-key-file no/such/token.txt"),
    (["--max-wait-ms", "-1"], "--max-wait-ms"),
])
def test_unsafe_or_bad_options_refused_in_one_line(folders, options, message):
    done = subprocess.run([sys.executable, "-m", "trendnlp", "serve", "--model", str(folders["a"]), "--port", "9",
                           *options], env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


# ---- hot swap under load -------------------------------------------------------------------------
def test_reload_under_load_drops_nothing_and_a_bad_folder_changes_nothing(server, folders, expected,
                                                                         sample_records):
    url, proc, _ = server
    records = as_json(sample_records)
    va, vb = folder_version(folders["a"]), folder_version(folders["b"])
    meta = httpx.get(f"{url}/v1/metadata", headers=AUTH).json()
    assert meta["model_version"] == va and meta["batching"] == {"max_batch_records": 16, "max_wait_ms": 20.0,
                                                                "enabled": True}
    # the weekly update: new files in the served folder, then SIGHUP
    shutil.rmtree(folders["live"])
    shutil.copytree(folders["b"], folders["live"])
    proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 60
    while httpx.get(f"{url}/v1/metadata", headers=AUTH).json()["model_version"] != vb:
        assert time.time() < deadline, "SIGHUP did not swap in the updated folder"
        time.sleep(0.2)

    n, reload_at = 240, 60
    answered = threading.Semaphore(0)
    bad = copy.deepcopy(records[5])
    bad["sales"] = [1.0, -3.0]

    def reloader():
        for _ in range(reload_at):
            answered.acquire()
        return httpx.post(f"{url}/v1/admin/reload", json={"model": str(folders["a"])}, headers=AUTH, timeout=120)

    with httpx.Client(timeout=120, headers=AUTH) as client, ThreadPoolExecutor(17) as pool:
        def ask(i):
            r = client.post(f"{url}/v1/predict", json={"records": [bad if i % 20 == 7 else records[i % len(records)]]})
            answered.release()
            return r

        swap = pool.submit(reloader)
        answers = list(pool.map(ask, range(n)))
        assert swap.result().status_code == 200, swap.result().text
    seen = set()
    for i, r in enumerate(answers):
        if i % 20 == 7:  # a bad record gets its own 422; its batch-mates are answered
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sales", r.text
            continue
        assert r.status_code == 200, r.text
        version = r.json()["model_version"]
        seen.add(version)
        got = [r.json()["results"][0]["probabilities"][k] for k in ("rising", "falling", "stable")]
        assert np.allclose(got, expected[version][i % len(records)], atol=1e-5)  # all from that one version
    assert seen == {va, vb}
    metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
    batched = float(next(line.split()[1] for line in metrics.splitlines()
                         if line.startswith("trendnlp_batch_requests_sum")))
    calls = float(next(line.split()[1] for line in metrics.splitlines()
                       if line.startswith("trendnlp_batch_requests_count")))
    assert batched / calls > 1.5, (batched, calls)  # concurrent requests did share model calls

    for folder, reason in ((folders["broken"], "does not load"), (folders["other_history"], "history"),
                           (folders["root"] / "missing", "not found")):
        r = httpx.post(f"{url}/v1/admin/reload", json={"model": str(folder)}, headers=AUTH, timeout=120)
        assert r.status_code == 422 and reason in r.json()["detail"] and "still serving" in r.json()["detail"], r.text
        after = httpx.post(f"{url}/v1/predict", json={"records": records[:2]}, headers=AUTH)
        assert after.status_code == 200 and after.json()["model_version"] == va


# ---- memory over a soak --------------------------------------------------------------------------
def test_soak_keeps_the_server_memory_flat(server, sample_records, record_property):
    url, proc, _ = server
    records = as_json(sample_records)

    def burst(n):
        with httpx.Client(timeout=120, headers=AUTH) as client, ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda i: client.post(f"{url}/v1/predict",
                                                        json={"records": [records[i % len(records)]]}).status_code,
                                  range(n)))
        assert codes == [200] * n

    burst(400)  # warm: caches, allocator pools, thread pool
    before = rss_mb(proc.pid)
    burst(2000)
    growth = rss_mb(proc.pid) - before
    record_property("rss_growth_mb", round(growth, 1))
    print(f"\nserver RSS {before:.0f} MB after 400 requests, {growth:+.1f} MB over 2,000 more")
    assert growth < 25, f"the server grew {growth:.1f} MB over 2,000 requests"


# ---- kill -9 leaves nothing to repair; SIGTERM drains ---------------------------------------------
def test_kill_9_mid_load_then_restart_answers_and_sigterm_drains(folders, expected, sample_records, tmp_path):
    records = as_json(sample_records)
    version = folder_version(folders["a"])
    served = start_server(folders["a"], log=tmp_path / "k.log")
    stop = threading.Event()

    def load():
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    client.post(f"{served.url}/v1/predict", json={"records": records[:4]})
                except httpx.TransportError:
                    pass

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(load)
        time.sleep(1.5)
        served.proc.kill()
        served.proc.wait(timeout=30)
        stop.set()
    assert folder_version(folders["a"]) == version  # the server writes nothing: no state to repair
    port = int(served.url.rsplit(":", 1)[1])
    again = start_server(folders["a"], "--grace-seconds", "20", log=tmp_path / "k2.log", port=port)
    body = json.dumps({"records": records[:4]}).encode()

    def slow_upload():  # the request is in flight (its body still arriving) when SIGTERM comes
        yield body[:100]
        time.sleep(1.5)
        yield body[100:]

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.post, f"{again.url}/v1/predict", content=slow_upload(),
                           headers={"content-type": "application/json"}, timeout=60)
        time.sleep(0.5)
        again.proc.send_signal(signal.SIGTERM)
        r = slow.result()
    assert r.status_code == 200 and r.json()["model_version"] == version
    got = [[x["probabilities"][k] for k in ("rising", "falling", "stable")] for x in r.json()["results"]]
    assert np.allclose(got, expected[version][:4], atol=1e-5)
    # uvicorn exits by re-raising the signal it caught, once the requests in flight are answered
    assert again.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Finished server process" in again.log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{again.url}/health", timeout=2)
