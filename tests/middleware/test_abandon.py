"""A client that goes away after sending its request stops the work done for it."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from spyglass.app import create_app
from spyglass.errors import Abandoned
from spyglass.overload.deadline import check
from spyglass.routes.deps import run
from tests.conftest import test_settings as make_settings


async def test_a_disconnect_stops_the_threads_of_its_request(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path / "data"))
    started, stopped = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        for _ in range(60_000):  # bounded: 5 minutes of 5 ms steps
            try:
                check()
            except Abandoned:
                stopped.set()
                raise
            time.sleep(0.005)

    async def endpoint(request: Request) -> JSONResponse:
        await request.body()
        await run(request, work)
        return JSONResponse({})

    app.router.routes.insert(0, Route("/collections/c/search", endpoint, methods=["POST"]))
    gone = asyncio.Event()
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/collections/c/search", "raw_path": b"/collections/c/search",
        "query_string": b"", "root_path": "", "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    async with app.router.lifespan_context(app):
        lane = app.state.admission.gates["search"].lane
        request = asyncio.create_task(app(scope, receive, send))
        assert await asyncio.to_thread(started.wait, 60)
        assert not stopped.is_set() and lane.in_flight == 1
        gone.set()  # the client disconnects
        assert await asyncio.to_thread(stopped.wait, 60)  # the thread saw it and stopped
        await request
        assert lane.in_flight == 0
    assert sent[0]["status"] == 503  # what the app answered: nobody reads it
