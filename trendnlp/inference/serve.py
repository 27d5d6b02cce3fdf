"""`trendnlp serve`: a saved model over HTTP with FastAPI + uvicorn (docs/serving.md; extra `trendnlp[serve]`).

    GET  /health            {"status": "ok"} once the model is loaded (open even when a token is set)
    GET  /v1/metadata       labels, label rule, versions, training summary, model version, limits, batching; the
                            model kind and, for a hybrid, its blend weight and each branch's validation score
    POST /v1/predict        {"records": [...]} (docs/data.md) -> {"labels": [...], "model_version": ..., "results":
                            [{"product_id", "cutoff", "label", "probabilities": {label: p}}, ...]}, one per record
    POST /v1/explain        the same body (?top_words=8&text_steps=8) -> {"labels", "results": [clf.explain(...)]}
    POST /v1/admin/reload   {"model": DIR} (optional; default the folder served): load, check, swap (token needed)
    GET  /metrics           Prometheus text format

Requests pass three gates before the model sees them: the body size (413 above `max_body_bytes`, checked on
the Content-Length header and on the bytes actually received), the body's shape (pydantic: an object whose
`records` is a non-empty list of objects; OpenAPI shows each as the record declared once in
`trendnlp.data.record_files.schema`), then each record, once, by the rules every reader applies (`validate_rows`: types,
history length, the model's channels; a field the record declaration lacks is refused); a bad record is a 422
naming its index and field. More than `max_records` records is a 413. Valid records go
to the prediction core (`model.predict.Predictor`, as `trendnlp label`: each distinct text encoded once, pooled
text embeddings kept in a bounded LRU cache across requests; the probabilities equal `predict_proba`'s):
through the dynamic batcher (`inference.batching`) that gathers concurrent requests into one model call, or,
with `max_wait_ms=0`, one request at a time under a lock. The model version behind the answers is swapped by
`/v1/admin/reload` or SIGHUP (`inference.model_service`); the token, request ids and metrics sit in front of
everything (`inference.serve_ops`). SIGTERM: uvicorn stops accepting, finishes the requests in flight (up to
`grace_seconds`), then the batcher finishes its queue. Endpoints are plain functions that FastAPI runs in its
thread pool: /health answers while a batch is scored.

FastAPI, pydantic, uvicorn and prometheus-client are imported only inside functions, so the rest of trendnlp
works without the extra.
"""

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from trendnlp.data.record_files.io import RecordError
from trendnlp.data.record_files.schema import record_model
from trendnlp.inference.labeling_args import BATCH_SIZE, TEXT_CACHE
from trendnlp.inference.model_service import Loaded, ModelService, ReloadError
from trendnlp.inference.serve_args import GRACE_SECONDS, MAX_BATCH_RECORDS, MAX_BODY_BYTES, MAX_RECORDS, MAX_WAIT_MS
from trendnlp.inference.serve_ops import Door, Metrics, ServeSetupError, check_door, log_config, read_token

THREADS = 128  # FastAPI's thread pool: requests waiting on a batch each hold a thread (anyio's default is 40)
INSTALL_HINT = "trendnlp serve needs FastAPI, uvicorn and prometheus-client: pip install 'trendnlp[serve]'"
log = logging.getLogger("trendnlp.serve")
__all__ = ["create_app", "serve", "MissingExtraError", "ServeSetupError"]


class MissingExtraError(ImportError):
    """FastAPI / uvicorn are not installed."""


def _require_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import pydantic  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise MissingExtraError(f"{INSTALL_HINT} ({e})") from None


# ---- the request body: records checked once, by the readers' rules -------------------------------
def request_model():
    """{"records": [record, ...]}: the body of /v1/predict (and /v1/explain).

    pydantic checks the envelope only; each record stays a dict for `ModelService.validate` (the rules of every
    reader, so a request and a file are refused alike), and is documented in OpenAPI by the pydantic model of
    the record declaration (`trendnlp.data.record_files.schema.record_model`).
    """
    from typing import Annotated

    from pydantic import ConfigDict, Field, WithJsonSchema, create_model

    record = Annotated[dict[str, Any], WithJsonSchema(record_model().model_json_schema())]
    return create_model("RecordsRequest", __config__=ConfigDict(extra="forbid"),
                        records=(list[record], Field(..., min_length=1, description="product records (docs/data.md, the record contract)")))


def _error_items(errors: Sequence[dict]) -> list[dict]:
    """pydantic / FastAPI errors -> [{"index": record index or None, "field": ..., "message": ...}]."""
    items = []
    for e in errors:
        loc = [p for p in e.get("loc", ()) if p != "body"]
        index = loc[1] if len(loc) > 1 and loc[0] == "records" and isinstance(loc[1], int) else None
        rest = loc[2:] if index is not None else loc
        field = ".".join(str(p) for p in rest if isinstance(p, str)) or ("records" if loc else "(body)")
        at = "".join(f"[{p}]" for p in rest if isinstance(p, int))
        items.append({"index": index, "field": field, "message": f"{e.get('msg', 'invalid')}{' at ' + at if at else ''}"})
    return items


def _describe(item: dict) -> str:
    where = f"record {item['index']}: " if item["index"] is not None else ""
    return f"{where}field '{item['field']}': {item['message']}"


# ---- the app -------------------------------------------------------------------------------------
def create_app(model: Any, *, max_body_bytes: int = MAX_BODY_BYTES, max_records: int = MAX_RECORDS,
               batch_size: int = BATCH_SIZE, text_cache: int = TEXT_CACHE, max_batch_records: int = MAX_BATCH_RECORDS,
               max_wait_ms: float = MAX_WAIT_MS, token: str | None = None):
    """The FastAPI app serving one model (loaded here, once; swapped by /v1/admin/reload).

    Args:
        model: a saved model folder or a `TrendClassifier`.
        max_body_bytes: larger request bodies get a 413 before they are parsed.
        max_records: more records in one request get a 413.
        batch_size: distinct texts per text-encoder pass.
        text_cache: pooled text embeddings kept across requests (0: none).
        max_batch_records: records per batched model call at most (a larger request runs alone).
        max_wait_ms: how long a request waits for batch-mates; 0 turns batching off (one request at a time).
        token: the bearer token every endpoint but /health asks for; None: open (and no admin endpoint).
    Returns:
        a `fastapi.FastAPI` application (run it with uvicorn, or `serve`).

    >>> app = create_app("runs/demo/model")  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    _require_extra()
    from fastapi import Body, FastAPI, HTTPException, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response

    import trendnlp
    from trendnlp.inference.batching import Batcher

    if max_batch_records < 1 or max_wait_ms < 0:
        raise ServeSetupError(f"--max-batch-records must be >= 1 and --max-wait-ms >= 0, found {max_batch_records} "
                              f"and {max_wait_ms}")
    service = ModelService(model, batch_size=batch_size, text_cache=text_cache)
    metrics = Metrics()
    metrics.serving(service.current.version, service.current.model_dir, service.current.meta["kind"])

    def run_batch(records: list[dict]) -> tuple[np.ndarray, Loaded]:
        return service.score(records)

    predicting = [0]  # /v1/predict requests in flight, counted by Door: the batcher waits only for those
    batcher = Batcher(run_batch, max_batch_records, max_wait_ms, on_batch=metrics.on_batch,
                      in_flight=lambda: predicting[0]) if max_wait_ms > 0 else None

    @contextlib.asynccontextmanager
    async def lifespan(app):
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        yield
        if batcher is not None:  # after uvicorn drained the requests in flight: finish the queue, end the worker
            batcher.stop()

    Records = request_model()
    app = FastAPI(title="trendnlp", version=getattr(trendnlp, "__version__", "0"), lifespan=lifespan,
                  description="Sales-trend labels (rising / falling / stable) for product records (the record contract of docs/data.md).")
    app.state.service, app.state.metrics = service, metrics
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    # outermost: every request gets an id and is counted
    app.add_middleware(Door, token=token, metrics=metrics, predicting=predicting)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        items = _error_items(exc.errors())
        return JSONResponse(status_code=422, content={"detail": _describe(items[0]) if items else "invalid request",
                                                      "errors": items})

    @app.exception_handler(RecordError)
    async def bad_record(request: Request, exc: RecordError):
        item = {"index": exc.row, "field": exc.field, "message": exc.reason}
        return JSONResponse(status_code=422, content={"detail": _describe(item), "errors": [item]})

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):  # the server answers and stays up
        log.error("internal error on %s: %s: %s", request.url.path, type(exc).__name__, exc)
        return JSONResponse(status_code=500, content={"detail": f"internal error: {type(exc).__name__}: {exc}"})

    def records_of(body) -> list[dict]:
        if len(body.records) > max_records:
            raise HTTPException(413, f"{len(body.records)} records in one request; at most {max_records} "
                                     "(split the request, or start the server with a larger --max-records)")
        return service.validate(body.records)

    def reload(model_dir: str | None = None) -> dict:
        try:
            done = service.reload(model_dir)
        except ReloadError as e:
            metrics.reloads.labels("failed").inc()
            log.error("reload refused: %s", e)
            raise
        metrics.reloads.labels("ok").inc()
        metrics.serving(done["model_version"], done["model_dir"], service.current.meta["kind"])
        return done

    app.state.reload = reload

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/metadata")
    def metadata() -> dict:
        m = service.current
        return {**m.meta, "limits": {"max_body_bytes": max_body_bytes, "max_records": max_records},
                "batching": {"max_batch_records": max_batch_records, "max_wait_ms": max_wait_ms,
                             "enabled": batcher is not None},
                "text_cache": {"size": text_cache, "texts_encoded": m.labeler.texts_encoded,
                               "texts_cached": m.labeler.texts_cached}}

    @app.post("/v1/predict")
    def predict(body: Records) -> dict:
        records = records_of(body)
        if batcher is not None:
            probs, m = batcher.submit(records).result()
        else:
            with service.lock:
                probs, m = service.score(records)
                metrics.on_batch(1, len(records))
        metrics.records.labels("/v1/predict").inc(len(records))
        return {"labels": m.labels, "model_version": m.version, "results": _results(records, probs, m.labels)}

    @app.post("/v1/explain")
    def explain(body: Records, top_words: int = Query(8, ge=0, le=50),
                text_steps: int = Query(8, ge=0, le=64)) -> dict:
        """`clf.explain` per record (docs/explain.md): text vs sales split, salient weeks, top words, review."""
        try:
            import captum  # noqa: F401  (the explain extra)
        except ImportError:
            raise HTTPException(501, "explanations need the explain extra: pip install 'trendnlp[explain]'") from None
        records = records_of(body)
        results, m = service.explain(records, top_words=top_words, text_steps=text_steps)
        metrics.records.labels("/v1/explain").inc(len(records))
        return {"labels": m.labels, "model_version": m.version, "results": results}

    @app.post("/v1/admin/reload")
    def admin_reload(model: str | None = Body(None, embed=True,
                                               description="model folder to serve (default: the one served)")) -> dict:
        """Load a model folder beside the running one, check it, switch to it; a bad folder changes nothing."""
        if token is None:
            raise HTTPException(403, "the admin endpoint needs a token: start the server with --api-key-file FILE "
                                     "(or TRENDNLP_API_KEY), or send the server SIGHUP to reload its folder")
        try:
            return {"status": "reloaded", **reload(model)}
        except ReloadError as e:
            raise HTTPException(422, str(e)) from None

    @app.get("/metrics")
    def prometheus() -> Response:
        content, media_type = metrics.exposition()
        return Response(content, media_type=media_type)

    return app


def _results(records: list[dict], probs: np.ndarray, labels: list[str]) -> list[dict]:
    return [{"product_id": r["product_id"], "cutoff": r["cutoff"],
             **({"category": r["category"]} if r.get("category") is not None else {}),
             "label": labels[int(np.argmax(p))], "probabilities": {name: float(v) for name, v in zip(labels, p)}}
            for r, p in zip(records, probs)]


class BodyLimit:
    """ASGI middleware: 413 for bodies over `max_bytes`, by Content-Length and by the bytes actually received
    (chunked uploads carry no length), before any parsing."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from fastapi import HTTPException
        from fastapi.responses import JSONResponse

        too_large = f"request body over {self.max_bytes:,} bytes (start the server with a larger --max-body-bytes)"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await JSONResponse({"detail": "bad Content-Length header"}, status_code=400)(scope, receive,
                                                                                                    send)
            if int(length) > self.max_bytes:
                return await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # FastAPI turns this into the 413 response
                    raise HTTPException(413, too_large)
            return message

        await self.app(scope, limited, send)


def serve(model: Any, host: str = "127.0.0.1", port: int = 8000, *, max_body_bytes: int = MAX_BODY_BYTES,
          max_records: int = MAX_RECORDS, batch_size: int = BATCH_SIZE, text_cache: int = TEXT_CACHE,
          max_batch_records: int = MAX_BATCH_RECORDS, max_wait_ms: float = MAX_WAIT_MS,
          api_key_file: str | None = None, allow_unauthenticated: bool = False, grace_seconds: int = GRACE_SECONDS,
          log_level: str = "info") -> None:
    """Load the model once and serve it with uvicorn (one process) until SIGINT / SIGTERM.

    Args:
        model: a saved model folder.
        host, port: where to listen; the default host accepts connections from this machine only. Another
            host needs a token (`api_key_file` or TRENDNLP_API_KEY) unless `allow_unauthenticated`.
        max_body_bytes, max_records, batch_size, text_cache, max_batch_records, max_wait_ms: as for `create_app`.
        api_key_file: a file whose first line is the bearer token.
        grace_seconds: on SIGTERM, how long the requests in flight get to finish.
        log_level: uvicorn's log level.
    Raises:
        ServeSetupError: an unreadable token file, or an open host without a token.

    SIGHUP reloads the served folder (as POST /v1/admin/reload without a body).

    >>> serve("runs/demo/model", port=8000)  # doctest: +SKIP
    """
    _require_extra()
    import signal
    import threading

    import uvicorn

    token = read_token(api_key_file)
    check_door(host, token, allow_unauthenticated)
    app = create_app(model, max_body_bytes=max_body_bytes, max_records=max_records, batch_size=batch_size,
                     text_cache=text_cache, max_batch_records=max_batch_records, max_wait_ms=max_wait_ms, token=token)

    def reload_logged():
        with contextlib.suppress(ReloadError):  # reload() logged the reason; the old version serves on
            app.state.reload()

    if hasattr(signal, "SIGHUP"):  # the reload runs beside the server, never inside the signal handler
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload_logged, daemon=True).start())
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, workers=1, timeout_keep_alive=5,
                            timeout_graceful_shutdown=grace_seconds, log_config=log_config())
    uvicorn.Server(config).run()
