"""Start a real ``spyglass serve`` process (uvicorn, N workers) for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """kill -9 the server and all its workers at once, as a crash would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def start(
    data_dir: Path,
    *,
    workers: int = 1,
    log: Path,
    timeout: float = 120,
    command: str = "serve",
    env: dict[str, str] | None = None,
) -> Server:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "spyglass",
        command,
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    ready: set[str] = set()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            answer = httpx.get(url + "/readyz", timeout=2)  # a new connection: any worker
            if answer.status_code == 200:
                ready.add(answer.json()["checks"]["pid"])
            if len(ready) >= workers:  # every worker ready, not just the quickest
                return Server(url=url, process=process, log=log)
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError(f"server not ready after {timeout} s:\n{log.read_text()}")


@contextmanager
def running(
    data_dir: Path, *, workers: int = 1, log: Path, env: dict[str, str] | None = None
) -> Iterator[Server]:
    server = start(data_dir, workers=workers, log=log, env=env)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGTERM)
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
