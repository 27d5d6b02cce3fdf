"""Load test of a running `trendnlp serve` on this machine: throughput, latency percentiles and errors.

    trendnlp serve --model runs/demo/model --port 8000 &
    python scripts/load_test.py --url http://127.0.0.1:8000 --requests 2000 --concurrency 8 --batch-sizes 1 64

Bounded by design: N requests (at most 100,000), C concurrent (at most 64), and only against 127.0.0.1 /
localhost / ::1 (other hosts are refused: this is not a tool to point at someone else's server). Each request
posts `batch size` records taken in turn from --records (default data_samples/catalog.jsonl); a request is
an error when it fails or answers anything but 200 with one result per record.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
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


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (loopback only)")
    p.add_argument("--requests", type=int, default=2000, help="requests per batch size")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64], help="records per request")
    p.add_argument("--records", default=str(ROOT / "data_samples" / "catalog.jsonl"), help="JSONL records to send")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    args = p.parse_args(argv)
    host = urlparse(args.url).hostname
    if host not in LOOPBACK:
        p.error(f"--url host {host!r} refused: the load test only targets this machine ({sorted(LOOPBACK)})")
    if not 1 <= args.requests <= MAX_REQUESTS or not 1 <= args.concurrency <= MAX_CONCURRENCY:
        p.error(f"--requests must be in 1..{MAX_REQUESTS} and --concurrency in 1..{MAX_CONCURRENCY}")
    if min(args.batch_sizes) < 1:
        p.error("--batch-sizes must be >= 1")
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
    """Send n requests of `size` records with `concurrency` threads; latencies in seconds."""
    batches, lock = unique_batches(records, size), threading.Lock()
    latencies, errors = [], []
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

        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(n)))
        wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"batch_size": size, "requests": n, "concurrency": concurrency, "seconds": round(wall, 1),
            "requests_per_s": round(n / wall, 1), "records_per_s": round(n * size / wall, 1),
            "p50_ms": round(1000 * q[49], 1), "p99_ms": round(1000 * q[98], 1), "errors": len(errors),
            "first_error": errors[0] if errors else None}


def cache_stats(url: str) -> dict:
    cache = httpx.get(f"{url}/v1/metadata", timeout=30).json().get("text_cache") or {}
    return {"texts_encoded": cache.get("texts_encoded", 0), "texts_cached": cache.get("texts_cached", 0)}


def main(argv=None) -> int:
    args = parse_args(argv)
    records = [json.loads(line) for line in Path(args.records).read_text(encoding="utf-8").splitlines() if line.strip()]
    meta = httpx.get(f"{args.url}/v1/metadata", timeout=args.timeout).json()
    print(f"server {args.url}: model {meta.get('model_dir')}, labels {meta['labels']}")
    rows = []
    for size in args.batch_sizes:
        run(args.url, records, min(args.concurrency * 2, args.requests), args.concurrency, size, args.timeout)  # warm-up
        before = cache_stats(args.url)
        rows.append(run(args.url, records, args.requests, args.concurrency, size, args.timeout))
        after = cache_stats(args.url)  # how many texts the server encoded vs. took from its embedding cache
        rows[-1].update({k: after[k] - before[k] for k in ("texts_encoded", "texts_cached")})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| batch size | requests | concurrency | seconds | requests/s | records/s | p50 ms | p99 ms | errors "
          "| texts encoded / from cache |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['requests']:,} | {r['concurrency']} | {r['seconds']} | {r['requests_per_s']} "
              f"| {r['records_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} "
              f"| {r['texts_encoded']:,} / {r['texts_cached']:,} |")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
