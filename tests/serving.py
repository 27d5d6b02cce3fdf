"""Real `trendnlp serve` servers on 127.0.0.1 for the tests: the app under uvicorn in a background thread
(`running_server`: skips a second torch import, for tests that only send requests), or the command itself in a
process of its own (`server_process`: for signals, kill -9, memory and logs).
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from conftest import REPO, subprocess_env


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




class Served(NamedTuple):
    url: str
    proc: subprocess.Popen
    log: Path


def start_server(model_dir: str | Path, *options: str, log: Path, port: int | None = None,
                 env: dict | None = None, timeout: float = 120) -> Served:
    """`python -m trendnlp serve --model DIR OPTIONS` on a loopback port, its output in `log` (a file, not a pipe:
    a chatty server never blocks on a full pipe); returns once /health answers."""
    import httpx

    port = port or free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "trendnlp", "serve", "--model", str(model_dir), "--port",
                                 str(port), *options], env=subprocess_env(**(env or {})), cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return Served(url, proc, log)
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not answer /health within {timeout} s")


@contextlib.contextmanager
def server_process(model_dir: str | Path, *options: str, log: Path, **kwargs: Any) -> Iterator[Served]:
    """`start_server`, stopped (SIGTERM, then SIGKILL) afterwards."""
    served = start_server(model_dir, *options, log=log, **kwargs)
    try:
        yield served
    finally:
        if served.proc.poll() is None:
            served.proc.terminate()
            try:
                served.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                served.proc.kill()


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
