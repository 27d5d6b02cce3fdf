"""`trendnlp serve`: a saved model over HTTP with FastAPI + uvicorn (DESIGN §5; extra `trendnlp[serve]`).

    GET  /health        {"status": "ok"} once the model is loaded
    GET  /v1/metadata   labels, label rule, versions, training summary, request limits; model kind and, for a
                        hybrid, its blend weight and each branch's validation score
    POST /v1/predict    {"records": [...]} (DESIGN §1) -> {"labels": [...], "results": [{"product_id", "cutoff",
                        "label", "probabilities": {label: p}}, ...]}, one result per record, in order
    POST /v1/explain    the same body (?top_words=8&text_steps=8) -> {"labels", "results": [clf.explain(...) per
                        record]}: text vs sales split, salient weeks, top words, most influential review

Requests pass three gates before the model sees them: the body size (413 above `max_body_bytes`, checked on
the Content-Length header and on the bytes actually received), the pydantic model of the §1 record declared
once in `trendnlp.data.schema`, then `validate_rows` (the rules every reader applies, e.g.
history length); a bad record is a 422 naming its index and field. More than `max_records` records is a 413.
A request's records are scored in one call of the prediction core (`model.predict.Predictor`, as `trendnlp label`: each
distinct text encoded once, pooled text embeddings kept in a bounded LRU cache across requests, since a shop
asks about the same products again and again; the probabilities equal `predict_proba`'s). Calls are
serialised by a lock (one model, one cache), so concurrent requests queue instead of interleaving. Endpoints are plain functions that
FastAPI runs in its thread pool: /health answers while a batch is scored.

FastAPI, pydantic and uvicorn are imported only inside this module's functions, so the rest of trendnlp
works without the extra.
"""

import functools
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trendnlp.data.records import RecordError, validate_rows
from trendnlp.data.channels import fed_channels
from trendnlp.data.schema import record_model

MAX_BODY_BYTES = 8 * 1024 * 1024  # ~10k typical records; bounds the memory and parse time of one request
MAX_RECORDS = 10_000
INSTALL_HINT = "trendnlp serve needs FastAPI and uvicorn: pip install 'trendnlp[serve]'"


class MissingExtraError(ImportError):
    """FastAPI / uvicorn are not installed."""


def _require_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import pydantic  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise MissingExtraError(f"{INSTALL_HINT} ({e})") from None


# ---- the model behind a lock ---------------------------------------------------------------------
class ModelService:
    """A loaded model, validated inputs and one lock: what every endpoint calls.

    Args:
        model: a saved model folder or a `TrendClassifier`.
        batch_size: distinct texts per text-encoder pass inside one request.
        text_cache: pooled text embeddings kept across requests (0: none).
    """

    def __init__(self, model: Any, batch_size: int = 64, text_cache: int = 16384):
        from trendnlp.model.load import load_model
        from trendnlp.model.predict import Predictor

        self.model_dir = str(model) if isinstance(model, (str, Path)) else None
        self.clf = load_model(model) if self.model_dir else (model.eval() if hasattr(model, "eval") else model)
        self.labeler = Predictor(self.clf, batch_size=batch_size, text_cache=text_cache)
        self.lock = threading.Lock()

    def validate(self, records: Sequence[dict]) -> list[dict]:
        """Normalised records, as `predict_proba` reads them; RecordError (row = index) on the first bad one."""
        c = self.clf.config
        rows = validate_rows(enumerate(records), source="request", history=c.sales.history, rule=c.labels.rule())
        return [rec for _, rec in rows]

    def call(self, fn: Callable[[list[dict]], Any], records: list[dict]) -> Any:
        """fn(records) under the model lock: one model call at a time."""
        with self.lock:
            return fn(records)

    def predict(self, records: list[dict]) -> list[dict]:
        """One result per validated record: product_id, cutoff, label and probabilities (one model call)."""
        probs = self.call(self.labeler, records).probs
        labels = self.clf.labels
        return [{"product_id": r["product_id"], "cutoff": r["cutoff"],
                 **({"category": r["category"]} if r.get("category") is not None else {}),
                 "label": labels[int(np.argmax(p))], "probabilities": {name: float(v) for name, v in zip(labels, p)}}
                for r, p in zip(records, probs)]

    def metadata(self) -> dict:
        """Labels, label rule, versions and the training summary of the model folder (metrics.json)."""
        import json
        from dataclasses import asdict

        c = self.clf.config
        meta: dict[str, Any] = {"labels": self.clf.labels, "label_rule": asdict(c.labels.rule()),
                                "history": c.sales.history, "inputs": {"text": c.text.enabled,
                                                                      "sales": c.sales.enabled},
                                "channels": ["sales", *(ch.name for ch in fed_channels(c.sales))],
                                "base_model": c.text.base_model if c.text.enabled else None,
                                "fusion": c.fusion.method, "model_dir": self.model_dir, "versions": {},
                                "training": None, "kind": getattr(self.clf, "kind", "neural"), "hybrid": None}
        if self.model_dir:
            d = Path(self.model_dir)
            saved = json.loads((d / "config.json").read_text(encoding="utf-8"))
            meta["versions"], meta["hybrid"] = saved.get("versions", {}), saved.get("hybrid")  # blend, branch scores
            if (d / "metrics.json").is_file():
                m = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
                meta["training"] = {"best_epoch": m.get("best_epoch"), "step": m.get("step"),
                                    **{f"{split}_{k}": m[split][k] for split in ("validation", "test")
                                       if m.get(split) for k in ("macro_f1", "accuracy", "n")}}
        return meta


# ---- request models from the §1 declaration (trendnlp.data.schema.record_model) -------------------
def request_model(record):
    """{"records": [record, ...]}: the body of /v1/predict (and /v1/explain)."""
    from pydantic import ConfigDict, Field, create_model

    return create_model("RecordsRequest", __config__=ConfigDict(extra="forbid"),
                        records=(list[record], Field(..., min_length=1, description="DESIGN §1 product records")))


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
               batch_size: int = 64, text_cache: int = 16384):
    """The FastAPI app serving one model (loaded here, once).

    Args:
        model: a saved model folder or a `TrendClassifier`.
        max_body_bytes: larger request bodies get a 413 before they are parsed.
        max_records: more records in one request get a 413.
        batch_size: distinct texts per text-encoder pass within a request.
        text_cache: pooled text embeddings kept across requests (0: none).
    Returns:
        a `fastapi.FastAPI` application (run it with uvicorn, or `serve`).

    >>> app = create_app("runs/demo/model")  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    _require_extra()
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    import trendnlp

    service = ModelService(model, batch_size=batch_size, text_cache=text_cache)
    Records = request_model(record_model())
    app = FastAPI(title="trendnlp", version=getattr(trendnlp, "__version__", "0"),
                  description="Sales-trend labels (rising / falling / stable) for product records (DESIGN §1).")
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

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
        return JSONResponse(status_code=500, content={"detail": f"internal error: {type(exc).__name__}: {exc}"})

    def records_of(body) -> list[dict]:
        if len(body.records) > max_records:
            raise HTTPException(413, f"{len(body.records)} records in one request; at most {max_records} "
                                     "(split the request, or start the server with a larger --max-records)")
        return service.validate([r.model_dump(exclude_none=True) for r in body.records])

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/metadata")
    def metadata() -> dict:
        return {**service.metadata(), "limits": {"max_body_bytes": max_body_bytes, "max_records": max_records},
                "text_cache": {"size": text_cache, "texts_encoded": service.labeler.texts_encoded,
                               "texts_cached": service.labeler.texts_cached}}

    @app.post("/v1/predict")
    def predict(body: Records) -> dict:
        return {"labels": service.clf.labels, "results": service.predict(records_of(body))}

    @app.post("/v1/explain")
    def explain(body: Records, top_words: int = Query(8, ge=0, le=50),
                text_steps: int = Query(8, ge=0, le=64)) -> dict:
        """`clf.explain` per record (DESIGN §5): text vs sales split, salient weeks, top words, review."""
        try:
            import captum  # noqa: F401  (the explain extra)
        except ImportError:
            raise HTTPException(501, "explanations need the explain extra: pip install 'trendnlp[explain]'") from None
        records = records_of(body)
        run = functools.partial(service.clf.explain, top_words=top_words, text_steps=text_steps)
        return {"labels": service.clf.labels, "results": service.call(run, records)}

    return app


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
          max_records: int = MAX_RECORDS, batch_size: int = 64, text_cache: int = 16384,
          log_level: str = "info") -> None:
    """Load the model once and serve it with uvicorn (one process) until interrupted.

    Args:
        model: a saved model folder.
        host, port: where to listen; the default host accepts connections from this machine only.
        max_body_bytes, max_records, batch_size, text_cache: as for `create_app`.
        log_level: uvicorn's log level.

    >>> serve("runs/demo/model", port=8000)  # doctest: +SKIP
    """
    _require_extra()
    import uvicorn

    app = create_app(model, max_body_bytes=max_body_bytes, max_records=max_records, batch_size=batch_size,
                     text_cache=text_cache)
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1, timeout_keep_alive=5)
