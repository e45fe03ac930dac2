"""The door refuses what a full lane cannot take, before any other layer runs;
admission keeps a slot until the thread its request started has finished."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from spyglass import problems
from spyglass.app import create_app
from spyglass.middleware.admission import Budget, install_admission
from spyglass.middleware.door import (
    DOOR_PASSED,
    DOOR_STATE,
    Door,
    DoorMiddleware,
    Refusal,
    refusal,
)
from spyglass.overload.http_protocol import encode
from spyglass.routes.deps import run
from tests.conftest import test_settings as make_settings
from tests.middleware.test_admission import ROOMY, Blocker, client_for, until


@pytest.fixture
def blocker() -> Blocker:
    return Blocker()


def guarded_app(blocker: Blocker) -> tuple[FastAPI, list[str]]:
    """One search slot, no queue; a layer inside the door records what reaches it."""
    app = FastAPI()
    problems.install(app)
    app.add_api_route("/collections/c/search", blocker.wait, methods=["POST"])
    app.add_api_route("/collections/c/items", blocker.wait, methods=["POST"])
    admission = install_admission(
        app, search=Budget(in_flight=1, queue=0, wait_ms=100), ingest=ROOMY, other=ROOMY
    )
    reached: list[str] = []

    def recording(inner: object) -> object:
        async def layer(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
            reached.append(scope["path"])
            await inner(scope, receive, send)  # type: ignore[operator]

        return layer

    app.add_middleware(recording)  # type: ignore[arg-type]
    shed: list[tuple[str, str]] = []
    door = Door(
        admission,
        on_shed=lambda name, reason, count: shed.extend([(name, reason)] * count),
        hsts="max-age=60",
    )
    app.add_middleware(DoorMiddleware, door=door)
    app.state.shed = shed
    return app, reached


async def test_a_full_lane_is_refused_at_the_door(blocker: Blocker) -> None:
    app, reached = guarded_app(blocker)
    async with client_for(app) as client:
        held = asyncio.create_task(client.post("/collections/c/search"))
        await until(lambda: blocker.entered == 1)
        refused = await client.post("/collections/c/search", json={"vector": [1]})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["cache-control"] == "no-store"
        assert refused.headers["x-content-type-options"] == "nosniff"
        assert refused.headers["strict-transport-security"] == "max-age=60"
        body = refused.json()
        assert body["type"] == "urn:spyglass:problem:unavailable" and body["status"] == 503
        assert "search" in body["detail"]
        assert reached == ["/collections/c/search"]  # only the held request got inside
        await asyncio.sleep(0)  # counted in the metrics on the loop's next turn
        assert app.state.shed == [("search", "queue_full")]
        # another class's lane is not full: it passes the door
        writing = asyncio.create_task(client.post("/collections/c/items"))
        await until(lambda: blocker.entered == 2)
        blocker.release.set()
        assert (await held).status_code == 200 and (await writing).status_code == 200
        assert (await client.post("/collections/c/search")).status_code == 200


async def test_a_slot_is_held_until_the_thread_of_a_cancelled_request_ends(
    tmp_path: Path,
) -> None:
    proceed = threading.Event()
    app = create_app(
        make_settings(
            tmp_path / "data",
            admission_search_in_flight=1,
            admission_search_queue=0,
            search_timeout_s=0.05,
        )
    )

    async def slow(request: Request) -> JSONResponse:
        await run(request, proceed.wait)
        return JSONResponse({"ok": "yes"})

    app.router.routes.insert(0, Route("/collections/c/search", slow, methods=["POST"]))
    lane = app.state.admission.gates["search"].lane
    async with app.router.lifespan_context(app), client_for(app) as client:
        over = await client.post("/collections/c/search")  # its thread is still waiting
        assert over.status_code == 503 and "budget" in over.json()["detail"]
        assert lane.in_flight == 1  # the thread still runs: the slot is still taken
        refused = await client.post("/collections/c/search")
        assert refused.status_code == 503 and "capacity" in refused.json()["detail"]
        proceed.set()
        await until_async(lambda: lane.in_flight == 0)
        assert lane.stats.shed["budget"] == 1 and lane.stats.shed["queue_full"] == 1


async def until_async(condition: object) -> None:
    for _ in range(1000):  # bounded: the thread only has to return
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics"])
async def test_health_passes_the_door(tmp_path: Path, path: str) -> None:
    app = create_app(make_settings(tmp_path / "data"))
    async with app.router.lifespan_context(app), client_for(app) as client:
        assert (await client.get(path)).status_code == 200


async def test_a_flood_of_text_searches_does_not_take_the_vector_searches_lane(
    blocker: Blocker,
) -> None:
    app = FastAPI()
    problems.install(app)
    for name in ("t", "v"):
        app.add_api_route(f"/collections/{name}/search", blocker.wait, methods=["POST"])
    one = Budget(in_flight=1, queue=0, wait_ms=100)
    admission = install_admission(app, search=one, ingest=ROOMY, other=ROOMY)
    admission.learn("t", "text")  # as the engine reports when it looks a collection up
    admission.learn("v", "none")
    assert admission.gate_for("POST", "/collections/t/search")[0] == "search-text"
    assert admission.gate_for("POST", "/collections/v/search")[0] == "search"
    assert admission.gate_for("POST", "/collections/new/search")[0] == "search"
    async with client_for(app) as client:
        text = asyncio.create_task(client.post("/collections/t/search"))
        await until(lambda: blocker.entered == 1)
        assert (await client.post("/collections/t/search")).status_code == 503  # its lane is full
        vector = asyncio.create_task(client.post("/collections/v/search"))
        await until(lambda: blocker.entered == 2)  # admitted beside the text search
        blocker.release.set()
        assert (await text).status_code == 200 and (await vector).status_code == 200
    assert admission.stats["search-text"].shed == 1 and admission.stats["search"].shed == 0


async def test_the_engine_tells_admission_each_collections_lane(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path / "data"))
    async with app.router.lifespan_context(app), client_for(app) as client:
        assert (await client.put("/collections/v", json={"dim": 2})).status_code == 201
        body = {"vector": [1, 0], "k": 1}
        assert (await client.post("/collections/v/search", json=body)).status_code == 200
        assert app.state.admission.search_lanes == {"v": "search"}
        status = (await client.get("/status")).json()
        assert {"search", "search-text", "search-image", "search-color"} <= set(status["admission"])
        assert status["admission"]["search"]["admitted"] >= 1


async def test_the_app_hands_its_door_to_the_http_protocol(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path / "data"))
    async with app.router.lifespan_context(app) as state:
        assert state[DOOR_STATE] is app.state.door  # DoorHttpProtocol reads it there


def test_the_protocol_writes_the_same_refusal_as_the_asgi_door() -> None:
    answer = refusal("search", 2, None)
    defaults = [(b"date", b"Mon, 07 Dec 2026 05:00:00 GMT"), (b"server", b"uvicorn")]
    wire = encode(answer, defaults, keep_alive=True, head=False)
    head, _, body = wire.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    assert status == b"HTTP/1.1 503 Service Unavailable" and body == answer.content
    headers = [tuple(line.split(b": ", 1)) for line in lines]
    assert headers == [*defaults, *answer.start["headers"]]
    assert (b"retry-after", b"2") in headers and (
        b"content-length",
        str(len(body)).encode(),
    ) in headers
    closing = encode(answer, defaults, keep_alive=False, head=True)
    assert closing.endswith(b"connection: close\r\n\r\n")  # HEAD: headers only
    assert b"content-length: " + str(len(body)).encode() in closing


def test_searches_that_name_no_collection_draw_on_their_models_lane() -> None:
    app = FastAPI()
    admission = install_admission(app, search=ROOMY, ingest=ROOMY, other=ROOMY)
    assert admission.gate_for("GET", "/search")[0] == "search-color"  # Chromatica
    assert admission.gate_for("POST", "/search_by_image")[0] == "search-image"
    assert admission.gate_for("POST", "/upload")[0] == "search-image"
    assert admission.gate_for("POST", "/v1/embeddings")[0] == "search-text"


async def test_the_asgi_door_does_not_ask_again_for_what_the_protocol_let_in() -> None:
    admission = install_admission(
        FastAPI(), search=Budget(in_flight=1, queue=0, wait_ms=100), ingest=ROOMY, other=ROOMY
    )
    assert admission.gates["search"].lane.arrive(time.monotonic()) is True  # lane now full
    reached: list[str] = []
    sent: list[int] = []

    async def inner(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        reached.append(scope["path"])

    async def send(message: dict) -> None:  # type: ignore[type-arg]
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    door = DoorMiddleware(inner, Door(admission))
    scope = {"type": "http", "method": "POST", "path": "/collections/c/search"}
    await door(scope, None, send)
    assert sent == [503] and reached == []
    await door({**scope, "state": {DOOR_PASSED: True}}, None, send)
    assert sent == [503] and reached == ["/collections/c/search"]


async def test_the_refusals_of_one_loop_turn_reach_the_metrics_as_one_count() -> None:
    admission = install_admission(
        FastAPI(), search=Budget(in_flight=1, queue=0, wait_ms=100), ingest=ROOMY, other=ROOMY
    )
    assert admission.gates["search"].lane.arrive(time.monotonic()) is True  # lane now full
    calls: list[tuple[str, str, int]] = []
    door = Door(admission, on_shed=lambda name, reason, count: calls.append((name, reason, count)))
    for _ in range(3):
        assert isinstance(door.enter("POST", "/collections/c/search"), Refusal)
    assert calls == []
    await asyncio.sleep(0)
    assert calls == [("search", "queue_full", 3)]
