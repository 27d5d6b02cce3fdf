"""The door of `trendnlp serve`: bearer token, request ids in logs and headers, Prometheus metrics.

`Door` is one ASGI middleware in front of the app. For each HTTP request it
  - takes the caller's `X-Request-ID` (letters, digits, `.`, `_`, `-`; at most 64) or makes one, puts it in
    the response headers and in a context variable that `RequestIdFilter` adds to every log line;
  - refuses a request without `Authorization: Bearer <token>` with a 401 when a token is set (compared in
    constant time with `hmac.compare_digest`); `/health` stays open for load balancers and probes;
  - counts the request, its status and its latency in `Metrics` (prometheus-client, one registry per app).
"""
from __future__ import annotations

import contextvars
import hmac
import ipaddress
import logging
import os
import re
import time
import uuid
from pathlib import Path

TOKEN_ENV = "TRENDNLP_API_KEY"
OPEN_PATHS = frozenset({"/health"})
PATHS = ("/health", "/v1/metadata", "/v1/predict", "/v1/explain", "/v1/admin/reload", "/metrics")
_REQUEST_ID = contextvars.ContextVar("trendnlp_request_id", default="-")
_GOOD_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ServeSetupError(ValueError):
    """A serve option that cannot work (no token file, an open host without a token)."""


# ---- token ---------------------------------------------------------------------------------------
def read_token(api_key_file: str | Path | None) -> str | None:
    """The bearer token from `api_key_file` (its first line) or else the TRENDNLP_API_KEY variable; None: no token."""
    if api_key_file is not None:
        path = Path(api_key_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ServeSetupError(f"--api-key-file {path}: cannot read it ({e.__class__.__name__}); give a text "
                                  "file whose first line is the token") from None
        token = lines[0].strip() if lines else ""
        if len(token) < 16:
            raise ServeSetupError(f"--api-key-file {path}: the first line holds {len(token)} characters; a token "
                                  "needs at least 16 (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token and len(token) < 16:
        raise ServeSetupError(f"{TOKEN_ENV} holds {len(token)} characters; a token needs at least 16")
    return token or None


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_door(host: str, token: str | None, allow_unauthenticated: bool) -> None:
    """Refuse to listen beyond this machine without a token, unless explicitly allowed."""
    if token is None and not is_loopback(host) and not allow_unauthenticated:
        raise ServeSetupError(f"--host {host} accepts connections from other machines, and no token is set: give "
                              f"--api-key-file FILE (or set {TOKEN_ENV}), or pass --allow-unauthenticated if "
                              "something in front of the server guards it")


def token_ok(header: bytes | None, token: str) -> bool:
    """Whether an Authorization header carries `Bearer <token>` (constant-time compare)."""
    scheme, _, given = (header or b"").decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


# ---- request ids in logs -------------------------------------------------------------------------
def request_id() -> str:
    """The id of the request being handled ("-" outside one)."""
    return _REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record (uvicorn's access lines, trendnlp.serve's lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _REQUEST_ID.get()
        return True


def log_config() -> dict:
    """uvicorn's logging config with the request id on every line, and trendnlp.serve's logger beside it."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in LOGGING_CONFIG.items()}
    cfg["filters"] = {"request_id": {"()": RequestIdFilter}}
    cfg["formatters"] = {
        "default": {**LOGGING_CONFIG["formatters"]["default"], "fmt": "%(levelprefix)s [%(request_id)s] %(message)s"},
        "access": {**LOGGING_CONFIG["formatters"]["access"],
                   "fmt": '%(levelprefix)s [%(request_id)s] %(client_addr)s - "%(request_line)s" %(status_code)s'}}
    cfg["handlers"] = {name: {**h, "filters": ["request_id"]} for name, h in LOGGING_CONFIG["handlers"].items()}
    cfg["loggers"] = {**LOGGING_CONFIG["loggers"],
                      "trendnlp.serve": {"handlers": ["default"], "level": "INFO", "propagate": False}}
    return cfg


# ---- metrics -------------------------------------------------------------------------------------
class Metrics:
    """The server's Prometheus metrics in a registry of its own (several apps in one process stay apart)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

        self.registry = r = CollectorRegistry()
        self.requests = Counter("trendnlp_requests", "HTTP requests by path and status", ["path", "status"],
                                registry=r)
        self.latency = Histogram("trendnlp_request_seconds", "request latency by path", ["path"], registry=r,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.in_flight = Gauge("trendnlp_requests_in_flight", "requests being handled", registry=r)
        self.records = Counter("trendnlp_records", "records scored (predict) or explained", ["path"], registry=r)
        self.batch_records = Histogram("trendnlp_batch_records", "records per model call", registry=r,
                                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 10_000))
        self.batch_requests = Histogram("trendnlp_batch_requests", "requests per model call", registry=r,
                                        buckets=(1, 2, 4, 8, 16, 32, 64))
        self.reloads = Counter("trendnlp_reloads", "model reloads by result", ["result"], registry=r)
        self.model = Info("trendnlp_model", "the model version served", registry=r)

    def on_batch(self, n_requests: int, n_records: int) -> None:
        self.batch_requests.observe(n_requests)
        self.batch_records.observe(n_records)

    def serving(self, version: str, model_dir: str | None, kind: str = "neural") -> None:
        self.model.info({"version": version, "model_dir": model_dir or "", "kind": kind})

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# ---- the middleware ------------------------------------------------------------------------------
class Door:
    """ASGI middleware: request id, bearer token (when set), metrics; see the module docstring."""

    def __init__(self, app, token: str | None, metrics: Metrics, predicting: list[int] | None = None):
        self.app, self.token, self.metrics = app, token, metrics
        self.predicting = predicting if predicting is not None else [0]  # /v1/predict requests in flight

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _GOOD_ID.fullmatch(given) else uuid.uuid4().hex
        reset = _REQUEST_ID.set(rid)
        path = scope.get("path", "")
        label = path if path in PATHS else "other"
        status, t0 = 500, time.perf_counter()

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        self.metrics.in_flight.inc()
        predict = label == "/v1/predict"
        self.predicting[0] += predict  # only the event loop thread writes it
        try:
            if self.token is not None and path not in OPEN_PATHS and not token_ok(headers.get(b"authorization"),
                                                                                 self.token):
                from fastapi.responses import JSONResponse

                await JSONResponse({"detail": "missing or wrong bearer token: send 'Authorization: Bearer <token>'"},
                                   status_code=401, headers={"WWW-Authenticate": "Bearer"})(scope, receive,
                                                                                            send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            self.predicting[0] -= predict
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(label, str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - t0)
            _REQUEST_ID.reset(reset)
