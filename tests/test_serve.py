"""`trendnlp serve` as a real uvicorn process on 127.0.0.1, driven by a real httpx client."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving import server_process

from trendnlp.data.record_files.schema import record_fields
from trendnlp.model.classifier import TrendClassifier

REPO = Path(__file__).resolve().parents[1]
MAX_BODY = 200_000
MAX_RECORDS = 50


@pytest.fixture(scope="module")
def model_dir(tiny_config, sample_records, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("serve_model") / "model"
    TrendClassifier(tiny_config).fit_feature_scaling(sample_records).save_pretrained(d)
    (d / "metrics.json").write_text(json.dumps({"best_epoch": 1, "step": 10, "validation": {
        "macro_f1": 0.5, "accuracy": 0.6, "n": 40}}))
    return d


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """A `trendnlp serve` process; yields its base URL and process, and stops it afterwards."""
    with server_process(model_dir, "--max-body-bytes", str(MAX_BODY), "--max-records", str(MAX_RECORDS),
                        "--log-level", "warning", log=tmp_path_factory.mktemp("serve_log") / "server.log") as served:
        yield served.url, served.proc


def as_json(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if v is not None} for r in records]


def test_predict_equals_predict_proba(server, model_dir, sample_records):
    url, _ = server
    records = as_json(sample_records[:37])
    r = httpx.post(f"{url}/v1/predict", json={"records": records}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    clf = TrendClassifier.from_pretrained(model_dir)
    expected = clf.predict_proba(records)
    assert body["labels"] == clf.labels
    assert [x["product_id"] for x in body["results"]] == [rec["product_id"] for rec in records]  # in order
    got = np.array([[x["probabilities"][name] for name in clf.labels] for x in body["results"]])
    assert np.allclose(got, expected, atol=1e-5)
    assert [x["label"] for x in body["results"]] == [clf.labels[i] for i in expected.argmax(1)]
    assert body["results"][0]["cutoff"] == records[0]["cutoff"]
    # asked again, the texts come from the server's embedding cache: the same answer
    cached_before = httpx.get(f"{url}/v1/metadata").json()["text_cache"]["texts_cached"]
    again = httpx.post(f"{url}/v1/predict", json={"records": records}, timeout=60).json()
    assert httpx.get(f"{url}/v1/metadata").json()["text_cache"]["texts_cached"] > cached_before
    assert np.allclose([[x["probabilities"][n] for n in clf.labels] for x in again["results"]], expected, atol=1e-5)


def test_explain_equals_the_api_and_rejects_bad_records(server, model_dir, sample_records):
    url, _ = server
    records = as_json(sample_records[:3])
    r = httpx.post(f"{url}/v1/explain", params={"top_words": 3, "text_steps": 4}, json={"records": records},
                   timeout=120)
    assert r.status_code == 200, r.text
    got = r.json()["results"]
    expected = TrendClassifier.from_pretrained(model_dir).explain(records, top_words=3, text_steps=4)
    assert [g["product_id"] for g in got] == [rec["product_id"] for rec in records]
    for g, e in zip(got, expected):
        assert g["label"] == e["label"]
        assert np.allclose([g["probabilities"][k] for k in e["probabilities"]], list(e["probabilities"].values()),
                           atol=1e-5)
        assert np.isclose(g["shapley"]["text"], e["shapley"]["text"], atol=1e-4)
        assert len(g["sales_saliency"]) == len(e["sales_saliency"]) and len(g["top_words"]) <= 3
    bad = copy.deepcopy(records)
    bad[2]["sales"] = [1, -5]
    r = httpx.post(f"{url}/v1/explain", json={"records": bad}, timeout=60)
    assert r.status_code == 422 and "record 2" in r.json()["detail"] and "sales" in r.json()["detail"]
    assert httpx.post(f"{url}/v1/explain", params={"text_steps": 1000}, json={"records": records}).status_code == 422


def test_health_and_metadata(server):
    url, _ = server
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    meta = httpx.get(f"{url}/v1/metadata").json()
    assert meta["labels"] == ["rising", "falling", "stable"]
    assert meta["label_rule"] == {"K": 4, "F": 4, "alpha": 1.0, "tau": 0.25}
    assert meta["versions"]["torch"] and meta["training"]["validation_macro_f1"] == 0.5
    assert meta["limits"] == {"max_body_bytes": MAX_BODY, "max_records": MAX_RECORDS}
    assert len(meta["model_version"]) == 16 and meta["batching"]["enabled"]
    # no token set: the data endpoints are open, the admin endpoint is not
    r = httpx.post(f"{url}/v1/admin/reload", json={})
    assert r.status_code == 403 and "--api-key-file" in r.json()["detail"]
    assert httpx.get(f"{url}/metrics").status_code == 200


BAD = [  # (record changes, index of the bad record, field named)
    ({"sales": [1, -2, 3]}, 2, "sales"),
    ({"sales": "1,2,3"}, 1, "sales"),
    ({"sales": []}, 0, "sales"),
    ({"sales": [1] * 27}, 3, "sales"),  # longer than the model's 26-period history
    ({"product_id": None}, 1, "product_id"),
    ({"cutoff": "next week"}, 2, "cutoff"),
    ({"label": "up"}, 0, "label"),
    ({"reviews": [1, 2]}, 1, "reviews"),
    ({"colour": "red"}, 2, "colour"),
]


@pytest.mark.parametrize("change,index,field", BAD)
def test_bad_record_is_a_422_naming_index_and_field(server, sample_records, change, index, field):
    url, _ = server
    records = as_json(copy.deepcopy(sample_records[:4]))
    records[index].update(change)
    records[index] = {k: v for k, v in records[index].items() if v is not None}
    r = httpx.post(f"{url}/v1/predict", json={"records": records})
    assert r.status_code == 422, r.text
    first = r.json()["errors"][0]
    assert (first["index"], first["field"]) == (index, field), r.json()
    assert f"record {index}" in r.json()["detail"]


def test_openapi_shows_the_declared_record(server):
    """Records are checked once, by the readers' rules; the API page still documents the record declaration."""
    url, _ = server
    body = httpx.get(f"{url}/openapi.json").json()["components"]["schemas"]["RecordsRequest"]
    record = body["properties"]["records"]["items"]
    assert record["additionalProperties"] is False and record["required"] == ["product_id", "sales"]
    assert set(record["properties"]) == set(record_fields())


def test_bad_bodies_and_limits(server, sample_records):
    url, proc = server
    for content in (b"{not json", b"[]", b'{"records": []}', b'{"records": {"a": 1}}', b'{"rows": []}', b"\xff\xfe"):
        r = httpx.post(f"{url}/v1/predict", content=content, headers={"content-type": "application/json"})
        assert r.status_code == 422, (content, r.status_code, r.text)
    one = as_json(sample_records[:1])[0]
    r = httpx.post(f"{url}/v1/predict", json={"records": [dict(one, product_id=f"p{i}") for i in range(MAX_RECORDS + 1)]})
    assert r.status_code == 413 and "--max-records" in r.json()["detail"]
    big = json.dumps({"records": [dict(one, title="x" * MAX_BODY)]}).encode()
    assert httpx.post(f"{url}/v1/predict", content=big, headers={"content-type": "application/json"}).status_code == 413
    # a chunked upload has no Content-Length: the bytes received are counted
    chunks = (big[i:i + 8192] for i in range(0, len(big), 8192))
    r = httpx.post(f"{url}/v1/predict", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413
    dup = as_json(sample_records[:1]) * 2
    r = httpx.post(f"{url}/v1/predict", json={"records": dup})
    assert r.status_code == 422 and r.json()["errors"][0]["index"] == 1
    assert httpx.get(f"{url}/health").status_code == 200 and proc.poll() is None  # still up and answering


def test_concurrent_requests_get_their_own_results(server, model_dir, sample_records):
    url, _ = server
    records = as_json(sample_records)
    clf = TrendClassifier.from_pretrained(model_dir)
    batches = [records[i:i + 1 + i % 13] for i in range(0, 160, 5)]  # 32 requests of 1..13 records

    with httpx.Client(timeout=120) as client:
        def ask(batch):
            return client.post(f"{url}/v1/predict", json={"records": batch})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, batches))
    for batch, r in zip(batches, answers):
        assert r.status_code == 200, r.text
        got = np.array([[x["probabilities"][n] for n in clf.labels] for x in r.json()["results"]])
        assert np.allclose(got, clf.predict_proba(batch), atol=1e-5)
        assert [x["product_id"] for x in r.json()["results"]] == [b["product_id"] for b in batch]


def test_missing_extra_gives_one_line(model_dir, tmp_path):
    # a Python that cannot import fastapi: the command names the extra to install, no traceback
    block = tmp_path / "block"
    block.mkdir()
    (block / "fastapi.py").write_text("raise ImportError('No module named fastapi')\n")
    env = {**os.environ, "PYTHONPATH": f"{block}{os.pathsep}{REPO}", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "trendnlp", "serve", "--model", str(model_dir)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "pip install 'trendnlp[serve]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_load_test_script_runs_bounded_against_loopback_only(server, sample_records, tmp_path, capsys):
    from conftest import load_script

    url, _ = server
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in as_json(sample_records[:40])))
    load_test = load_script("load_test")
    argv = ["--requests", "12", "--concurrency", "3", "--batch-sizes", "1", "5", "--records", str(records)]
    assert load_test.main(["--url", url, *argv]) == 0
    out = capsys.readouterr().out
    assert "| given | 1 | 3 | 12 |" in out and "| given | 5 | 3 | 12 |" in out and "0 with a different label" in out
    with pytest.raises(SystemExit) as exc:
        load_test.main(["--url", "http://10.0.0.1:8000", *argv])
    assert exc.value.code == 2


def test_category_and_channels_pass_through_the_declared_schema(server, sample_records):
    """The request model is the record's declaration: `category` and the context channels are accepted and kept."""
    url, _ = server
    records = as_json(sample_records[:2])
    records[0] = {**records[0], "category": "mugs", "orders": [1.0] * len(records[0]["sales"])}
    r = httpx.post(f"{url}/v1/predict", json={"records": records}, timeout=60)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["category"] == "mugs" and "category" not in results[1]
    bad = {**records[1], "customers": [1.0, -2.0]}
    r = httpx.post(f"{url}/v1/predict", json={"records": [records[0], bad]}, timeout=60)
    assert r.status_code == 422 and r.json()["errors"][0]["index"] == 1
    assert r.json()["errors"][0]["field"] == "customers"
    assert httpx.get(f"{url}/v1/metadata").json()["channels"][0] == "sales"


def test_a_record_without_a_channel_the_model_reads_is_a_422(channel_model_dir, channel_records):
    """The server validates with the model's record_rules(), as predict_proba: the record lacking `orders` is a
    422 naming its index, the channel and the fix; with the channel the same request is answered."""
    from serving import running_server

    records = as_json(channel_records[:3])
    lacking = copy.deepcopy(records)
    del lacking[1]["orders"]
    with running_server(channel_model_dir) as url:
        r = httpx.post(f"{url}/v1/predict", json={"records": lacking}, timeout=60)
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == [{"index": 1, "field": "orders", "message": r.json()["errors"][0]["message"]}]
        assert r.json()["detail"].startswith("record 1: field 'orders': missing, but the model reads the `orders` "
                                             "channel")
        assert "--set 'sales.channels=[]'" in r.json()["detail"]
        ok = httpx.post(f"{url}/v1/predict", json={"records": records}, timeout=60)
        assert ok.status_code == 200 and len(ok.json()["results"]) == 3
