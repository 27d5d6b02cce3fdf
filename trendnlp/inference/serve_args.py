"""`trendnlp serve` options and their defaults, kept free of heavy imports (FastAPI, torch) so `--help` is quick.

The server (`inference.serve`) takes its defaults from here, so a limit is written once.
"""
from __future__ import annotations

import argparse

from trendnlp.inference.labeling_args import BATCH_SIZE, TEXT_CACHE

MAX_BODY_BYTES = 8 * 1024 * 1024  # ~10k typical records; bounds the memory and parse time of one request
MAX_RECORDS = 10_000
# docs/serving.md: the CPU a record falls up to 64 records a call; waiting 25 or 60 ms made no bigger batches
MAX_BATCH_RECORDS, MAX_WAIT_MS = 64, 5.0
GRACE_SECONDS = 30  # on SIGTERM, how long the requests in flight get to finish


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `trendnlp serve` options to a parser."""
    p.add_argument("--model", required=True, help="saved model folder, loaded once")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES, help="larger request bodies get a 413 "
                   f"(default {MAX_BODY_BYTES // 2**20} MiB)")
    p.add_argument("--max-records", type=int, default=MAX_RECORDS, help="more records per request get a 413 "
                   f"(default {MAX_RECORDS})")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="distinct texts per encoder pass within a "
                   "request")
    p.add_argument("--text-cache", type=int, default=TEXT_CACHE, help="pooled text embeddings kept across requests "
                   "(0: none)")
    p.add_argument("--max-batch-records", type=int, default=MAX_BATCH_RECORDS, help="dynamic batching: records per "
                   f"model call at most, gathered from concurrent requests (default {MAX_BATCH_RECORDS})")
    p.add_argument("--max-wait-ms", type=float, default=MAX_WAIT_MS, help="dynamic batching: how long a request "
                   f"waits for batch-mates (default {MAX_WAIT_MS:g}; 0: no batching, one request at a time)")
    p.add_argument("--api-key-file", default=None, help="file whose first line is the bearer token every endpoint "
                   "but /health asks for (or set TRENDNLP_API_KEY); needed for POST /v1/admin/reload")
    p.add_argument("--allow-unauthenticated", action="store_true", help="listen on a non-loopback --host without "
                   "a token (only behind something that guards the port)")
    p.add_argument("--grace-seconds", type=int, default=GRACE_SECONDS, help="on SIGTERM, how long requests in "
                   f"flight get to finish (default {GRACE_SECONDS})")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    return p
