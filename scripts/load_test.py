"""Load test of `trendnlp serve` on this machine: throughput, latency percentiles, errors and labels.

Against a server you started (one row per records-per-request and concurrency):

    trendnlp serve --model runs/demo/model --port 8000 &
    python scripts/load_test.py --url http://127.0.0.1:8000 --requests 2000 --concurrency 8 --batch-sizes 1 64

Or the whole comparison, each server started here on a free loopback port, one after the other: batching on
(`--max-wait-ms 5`) and off (`--max-wait-ms 0`), text cache on and off, one record per request at concurrency
1, 8 and 32, and the same records 64 to a request (the model's own batched rate) on the servers without
batching (the cache-on servers first see every record once, as a shop asks again about the products it
asked about); then the ratios the serving docs quote and whether every row gave the same label to every record:

    python scripts/load_test.py --model runs/demo/model --requests 320 --concurrency 1 8 32

Bounded by design: N requests (at most 100,000), C concurrent (at most 64), and only against 127.0.0.1 /
localhost / ::1 (other hosts are refused: this is not a tool to point at someone else's server). Each request
posts `batch size` records taken in turn from --records (default data_samples/catalog.jsonl); a request is
an error when it fails or answers anything but 200 with one result per record.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_REQUESTS, MAX_CONCURRENCY = 100_000, 64
SERVERS = (  # (name, serve options): batching on/off x text cache on/off
    ("batching, cache off", ["--text-cache", "0"]),
    ("no batching, cache off", ["--text-cache", "0", "--max-wait-ms", "0"]),
    ("batching, cache on", []),
    ("no batching, cache on", ["--max-wait-ms", "0"]),
)
REFERENCE = 64  # records per request of the model's own batched rate


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", default=None, help="a running server's base URL (loopback only)")
    where.add_argument("--model", default=None, help="saved model folder: start the four servers here, in turn")
    p.add_argument("--requests", type=int, default=2000, help="requests per row (single-record rows)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[8], help="requests in flight at once")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64], help="records per request (--url)")
    p.add_argument("--records", default=str(ROOT / "data_samples" / "catalog.jsonl"), help="JSONL records to send")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the servers started with --model")
    p.add_argument("--serve-option", action="append", default=[], help="extra `trendnlp serve` option for the "
                   "servers started with --model, e.g. --serve-option=--max-batch-records=32 (repeatable)")
    p.add_argument("--cache", choices=("both", "off", "on"), default="both", help="which servers --model starts: "
                   "text cache on and off (both), or only off / on (e.g. `--cache off --concurrency 32`: the "
                   "ratios of the serving docs, about a minute a run)")
    args = p.parse_args(argv)
    args.url = args.url or (None if args.model else "http://127.0.0.1:8000")
    host = urlparse(args.url).hostname if args.url else "127.0.0.1"
    if host not in LOOPBACK:
        p.error(f"--url host {host!r} refused: the load test only targets this machine ({sorted(LOOPBACK)})")
    if not 1 <= args.requests <= MAX_REQUESTS or not all(1 <= c <= MAX_CONCURRENCY for c in args.concurrency):
        p.error(f"--requests must be in 1..{MAX_REQUESTS} and --concurrency in 1..{MAX_CONCURRENCY}")
    if min(args.batch_sizes) < 1:
        p.error("--batch-sizes must be >= 1")
    if args.model and not Path(args.model).is_dir():
        p.error(f"--model {args.model}: no such folder (a saved model, e.g. runs/demo/model)")
    return args


def unique_batches(records: list[dict], size: int):
    """Endless batches of `size` records; (product_id, cutoff) stays unique within a batch."""
    stream = itertools.cycle(records)
    while True:
        batch, seen = [], set()
        for r in stream:
            key = (r["product_id"], r.get("cutoff"))
            if key not in seen:
                seen.add(key)
                batch.append(r)
            if len(batch) == size:
                break
        yield batch


def run(url: str, records: list[dict], n: int, concurrency: int, size: int, timeout: float) -> dict:
    """Send n requests of `size` records with `concurrency` threads; latencies in seconds, labels by record."""
    batches, lock = unique_batches(records, size), threading.Lock()
    latencies, errors, labels = [], [], {}
    with httpx.Client(base_url=url, timeout=timeout,
                      limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)) as client:
        def one(_):
            with lock:
                batch = next(batches)
            t0 = time.perf_counter()
            try:
                r = client.post("/v1/predict", json={"records": batch})
                ok = r.status_code == 200 and len(r.json()["results"]) == len(batch)
                problem = None if ok else f"HTTP {r.status_code}: {r.text[:200]}"
            except (httpx.HTTPError, ValueError, KeyError) as e:
                problem = f"{type(e).__name__}: {e}"
            with lock:
                latencies.append(time.perf_counter() - t0)
                if problem:
                    errors.append(problem)
                else:
                    labels.update(((x["product_id"], x["cutoff"]), x["label"]) for x in r.json()["results"])

        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(n)))
        wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100, method="inclusive") if n > 1 else [latencies[0]] * 99
    return {"batch_size": size, "requests": n, "concurrency": concurrency, "seconds": round(wall, 1),
            "requests_per_s": round(n / wall, 1), "records_per_s": round(n * size / wall, 1),
            "p50_ms": round(1000 * q[49], 1), "p99_ms": round(1000 * q[98], 1), "errors": len(errors),
            "first_error": errors[0] if errors else None, "labels": labels}


def cache_stats(url: str) -> dict:
    cache = httpx.get(f"{url}/v1/metadata", timeout=30).json().get("text_cache") or {}
    return {"texts_encoded": cache.get("texts_encoded", 0), "texts_cached": cache.get("texts_cached", 0)}


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system) of a process so far, from /proc (Linux); None elsewhere or without a pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return None


def model_calls(url: str) -> tuple[float, float]:
    """(model calls, records scored in them) so far, from the server's /metrics (0, 0 when it answers none)."""
    r = httpx.get(f"{url}/metrics", timeout=30)
    found = {}
    for line in (r.text.splitlines() if r.status_code == 200 else []):
        name, _, value = line.rpartition(" ")
        if name in ("trendnlp_batch_records_count", "trendnlp_batch_records_sum"):
            found[name] = float(value)
    return found.get("trendnlp_batch_records_count", 0.0), found.get("trendnlp_batch_records_sum", 0.0)


def measure(url: str, records: list[dict], plan: list[tuple[int, int, int]], timeout: float, server: str,
            pid: int | None = None) -> list[dict]:
    """One row per (records per request, concurrency, requests) of `plan`, each after a short warm-up; with the
    server's pid, also the CPU seconds a record of the server and of this client: on a machine shared with other
    jobs they give the ratios that wall-clock rates blur."""
    rows = []
    for size, concurrency, n in plan:
        run(url, records, min(concurrency * 2, n), concurrency, size, timeout)  # warm-up
        before, calls0, cpu0, own0 = cache_stats(url), model_calls(url), cpu_seconds(pid), os.times()
        row = run(url, records, n, concurrency, size, timeout)
        cpu1, own1 = cpu_seconds(pid), os.times()
        after, calls1 = cache_stats(url), model_calls(url)  # texts the server encoded vs. took from its cache
        scored, calls = n * size, calls1[0] - calls0[0]
        row.update({"server": server, **{k: after[k] - before[k] for k in ("texts_encoded", "texts_cached")},
                    "records_per_call": round((calls1[1] - calls0[1]) / calls, 1) if calls else None,
                    "server_cpu_ms": round(1000 * (cpu1 - cpu0) / scored, 2) if cpu0 is not None else None,
                    "client_cpu_ms": round(1000 * (own1.user + own1.system - own0.user - own0.system) / scored, 2)})
        print(json.dumps({k: v for k, v in row.items() if k != "labels"}), flush=True)
        rows.append(row)
    return rows


@contextlib.contextmanager
def started(model: str, options: list[str], threads: int):
    """`trendnlp serve --model MODEL OPTIONS` on a free loopback port until the block ends (SIGTERM): (url, pid)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "trendnlp", "serve", "--model", model, "--port", str(port),
                             "--log-level", "warning", *options], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"load_test: `trendnlp serve {' '.join(options)}` did not start")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def table(rows: list[dict]) -> str:
    out = ["| server | records/request | concurrency | requests | seconds | records/s | p50 ms | p99 ms | errors "
           "| texts encoded / from cache | records / model call | CPU ms a record: server / client |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    out += [f"| {r.get('server', 'given')} | {r['batch_size']} | {r['concurrency']} | {r['requests']:,} | {r['seconds']} "
            f"| {r['records_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} "
            f"| {r['texts_encoded']:,} / {r['texts_cached']:,} | {r.get('records_per_call') or ''} "
            f"| {r.get('server_cpu_ms') or ''} / {r.get('client_cpu_ms') or ''} |" for r in rows]
    return "\n".join(out)


def label_check(rows: list[dict]) -> tuple[int, int]:
    """(records compared, records whose label differs between any two rows)."""
    seen: dict = {}
    for r in rows:
        for key, label in r["labels"].items():
            seen.setdefault(key, set()).add(label)
    return len(seen), sum(len(v) > 1 for v in seen.values())


def summary(rows: list[dict], concurrency: int) -> list[str]:
    """The ratios the serving docs quote, at the highest concurrency, cache off."""
    def rate(server, size, key="records_per_s"):
        found = [r for r in rows if r["server"] == server and r["batch_size"] == size and r["concurrency"] == concurrency]
        return found[0][key] if found else None

    batched, unbatched = rate("batching, cache off", 1), rate("no batching, cache off", 1)
    reference = rate("no batching, cache off", REFERENCE)
    cpu = {k: rate(server, size, "server_cpu_ms") for k, server, size in (
        ("batched", "batching, cache off", 1), ("unbatched", "no batching, cache off", 1),
        ("reference", "no batching, cache off", REFERENCE))}
    lines = []
    if batched and reference:
        lines.append(f"cache off, concurrency {concurrency}, one record per request: batching {batched} records/s = "
                     f"{batched / reference:.0%} of {REFERENCE} records per request ({reference})")
    if batched and unbatched:
        lines.append(f"cache off, concurrency {concurrency}: batching {batched / unbatched:.2f}x of --max-wait-ms 0 "
                     f"({unbatched} records/s)")
    if all(cpu.values()):
        lines.append(f"server CPU a record (ms): batching {cpu['batched']}, --max-wait-ms 0 {cpu['unbatched']} "
                     f"({cpu['unbatched'] / cpu['batched']:.2f}x as much), {REFERENCE} a request {cpu['reference']} "
                     f"(batching at {cpu['reference'] / cpu['batched']:.0%} of its rate)")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    records = [json.loads(line) for line in Path(args.records).read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    if args.url:
        meta = httpx.get(f"{args.url}/v1/metadata", timeout=args.timeout).json()
        print(f"server {args.url}: model {meta.get('model_dir')} version {meta.get('model_version')}, "
              f"labels {meta['labels']}")
        plan = [(size, c, args.requests) for size in args.batch_sizes for c in args.concurrency]
        rows = measure(args.url, records, plan, args.timeout, "given")
    else:
        top = max(args.concurrency)
        for name, options in SERVERS:
            if args.cache != "both" and not name.endswith(f"cache {args.cache}"):
                continue
            plan = [(1, c, args.requests) for c in args.concurrency]
            if "--max-wait-ms" in options:  # the same number of records, 64 to a request
                plan.append((REFERENCE, top, max(4, args.requests // REFERENCE)))
            with started(args.model, [*options, *args.serve_option], args.threads) as (url, pid):
                if "cache on" in name:  # a shop asks again about products it asked about: the texts are cached
                    run(url, records, -(-args.requests // REFERENCE), 2, REFERENCE, args.timeout)
                rows += measure(url, records, plan, args.timeout, name, pid)
    print("\n" + table(rows))
    compared, differ = label_check(rows)
    print(f"\nlabels: {compared:,} records compared across the rows, {differ} with a different label in some row")
    if args.model:
        print("\n".join(summary(rows, max(args.concurrency))))
    return 1 if any(r["errors"] for r in rows) or differ else 0


if __name__ == "__main__":
    sys.exit(main())
