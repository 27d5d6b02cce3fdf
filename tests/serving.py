"""A real `trendnlp serve` app (uvicorn) on 127.0.0.1 in a background thread, for tests that send many requests.

Starting it in-process skips a second torch import (seconds); it is the same app and server as `trendnlp serve`.
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(model: str | Path | Any, **app_options: Any) -> Iterator[str]:
    """Serve `model` (a folder or a TrendClassifier) with uvicorn on a free loopback port; yields the base URL."""
    import httpx
    import uvicorn

    from trendnlp.inference.serve import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(model, **app_options), host="127.0.0.1", port=port,
                                           log_level="critical", workers=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
