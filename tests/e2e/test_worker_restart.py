"""A worker that dies is replaced, and the server answers throughout."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import running

pytestmark = pytest.mark.e2e


def workers_of(master: int) -> set[int]:
    """The uvicorn worker processes of ``master`` (spawned, not its resource tracker)."""
    found = set()
    for task in Path(f"/proc/{master}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"spawn_main" in command and b"resource_tracker" not in command:
                found.add(int(child))
    return found


def test_a_killed_worker_is_replaced(tmp_path: Path) -> None:
    with running(tmp_path / "data", workers=2, log=tmp_path / "server.log") as server:
        before = workers_of(server.process.pid)
        assert len(before) == 2
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            now = workers_of(server.process.pid)
            if len(now) == 2 and victim not in now:
                break
            assert time.monotonic() < deadline, f"no replacement for {victim}: {now}"
            time.sleep(0.2)
        replacement = (now - before).pop()
        seen: set[int] = set()
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=30) as client:
            while replacement not in seen:  # fresh connections: the kernel spreads them
                assert time.monotonic() < deadline, f"the replacement never answered: {seen}"
                r = client.get(server.url + "/livez")
                assert r.status_code == 200
                seen.add(int(r.json()["checks"]["pid"]))
        assert seen <= now
