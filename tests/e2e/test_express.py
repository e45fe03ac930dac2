"""The express lane: plain vector searches answered by the HTTP protocol itself.

It must be invisible to a client: the same answers, problems, headers, access-log
lines and metrics as the ASGI app gives with it off. And it must stay plain HTTP:
a search that waits for a slot keeps its connection's place, requests pipelined
behind it are answered after it, and one whose wait runs out gets the lane's 503.

The first test compares two real two-worker servers (express on and off). The others run a real
uvicorn server with Spyglass's HTTP protocol in the test's own event loop, so that a
test can hold the search lane's one slot itself, and let it go, with no clock.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from spyglass.app import create_app
from spyglass.middleware.admission import Slot
from spyglass.middleware.security_headers import API_CSP
from spyglass.settings import Settings
from tests.e2e.server import free_port, running

pytestmark = pytest.mark.e2e

VECTORS = {"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0], "c": [0.6, 0.8, 0.0], "d": [0.0, 0.0, 1.0]}
SEARCHES: list[tuple[str, bytes, dict[str, str]]] = [
    ("plain", json.dumps({"vector": [1.0, 0.1, 0.0], "k": 3}).encode(), {}),
    ("ef", json.dumps({"vector": [0.0, 1.0, 0.2], "k": 2, "ef": 20}).encode(), {}),
    ("own id", json.dumps({"vector": [0.5, 0.3, 0.1]}).encode(), {"X-Request-ID": "mine-1"}),
    ("insane id", json.dumps({"vector": [0.5, 0.3, 0.1]}).encode(), {"X-Request-ID": "a b"}),
    ("filter", json.dumps({"vector": [1.0, 0.0, 0.0], "filter": {"n": 2}}).encode(), {}),
    ("dims", json.dumps({"vector": [1.0, 0.0]}).encode(), {}),
    ("zero", json.dumps({"vector": [0.0, 0.0, 0.0]}).encode(), {}),
    ("k", json.dumps({"vector": [1.0, 0.0, 0.0], "k": 0}).encode(), {}),
    ("field", json.dumps({"vector": [1.0, 0.0, 0.0], "top": 3}).encode(), {}),
    ("nan", b'{"vector": [NaN, 0.0, 0.0]}', {}),
    ("not json", b'{"vector": [1.0, ', {}),
    ("two kinds", json.dumps({"vector": [1.0, 0.0, 0.0], "text": "x"}).encode(), {}),
]
VOLATILE = {"date", "x-request-id", "content-length"}  # took_ms differs in length


def fill(url: str) -> None:
    created = httpx.put(f"{url}/collections/v", json={"dim": 3, "metric": "cosine"})
    assert created.status_code == 201, created.text
    items = [
        {"id": key, "vector": vector, "payload": {"n": n}}
        for n, (key, vector) in enumerate(VECTORS.items())
    ]
    assert httpx.post(f"{url}/collections/v/items", json={"items": items}).status_code == 200


def answers(client: httpx.Client, collection: str = "v") -> list[dict[str, Any]]:
    """What a client sees for each of SEARCHES, without what differs by nature."""
    seen = []
    for label, body, headers in SEARCHES:
        r = client.post(f"/collections/{collection}/search", content=body, headers=headers)
        content = r.json()
        content.pop("took_ms", None)
        shown = {k: v for k, v in r.headers.items() if k not in VOLATILE}
        rid = r.headers.get("x-request-id", "")
        seen.append(
            {
                "label": label,
                "status": r.status_code,
                "headers": shown,
                "content": content,
                "id": rid if label == "own id" else bool(re.fullmatch("[0-9a-f]{32}", rid)),
            }
        )
    return seen


def access_lines(log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [
        {k: v for k, v in line.items() if k not in {"ts", "duration_ms", "request_id", "msg"}}
        for line in lines
        if line.get("logger") == "spyglass.access" and line.get("route", "").endswith("/search")
    ]


def search_counts(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    found = {}
    for line in text.splitlines():
        if line.startswith("spyglass_http_requests_total{") and "/search" in line:
            labels, _, value = line.rpartition(" ")
            found[labels] = float(value)
    return found


def test_the_express_lane_answers_as_the_app_does(tmp_path: Path) -> None:
    seen = {}
    for express in ("true", "false"):
        log = tmp_path / f"server-{express}.log"
        env = {"SPYGLASS_EXPRESS_SEARCH": express}
        with (
            running(tmp_path / f"data-{express}", workers=2, log=log, env=env) as server,
            httpx.Client(base_url=server.url) as client,  # one connection: one worker
        ):
            fill(server.url)
            first = answers(client)  # a worker's first search of a collection learns its kind
            again = answers(client)
            missing = answers(client, collection="nope")
            status = client.get("/status").json()
            seen[express] = {
                "answers": (first, again, missing),
                "log": access_lines(log),
                "metrics": search_counts(server.url),
                "express": status["express"],
            }
    on, off = seen["true"], seen["false"]
    assert on["answers"] == off["answers"]
    assert on["log"] == off["log"]
    assert on["metrics"] == off["metrics"]
    assert off["express"] == {}
    # the plain searches of the second round and the first round's after the first search
    assert on["express"]["answered"] >= 4, on["express"]
    assert on["express"]["refused"] == 0
    first, again, _ = on["answers"]
    assert [a["status"] for a in again[:4]] == [200, 200, 200, 200]
    assert again[2]["id"] == "mine-1" and again[3]["id"] is True
    assert {a["status"] for a in again[4:]} >= {400, 422}
    assert again[0]["content"]["hits"][0]["id"] == "a"
    assert again[0]["headers"]["content-security-policy"] == API_CSP


@asynccontextmanager
async def in_process(tmp: Path, **settings: Any) -> AsyncIterator[tuple[str, Any]]:
    """A real uvicorn server with Spyglass's HTTP protocol, in this event loop; yields
    its URL and the app (whose admission lanes the test may hold)."""
    port = free_port()
    options = {
        "data_dir": tmp / "data",
        "port": port,
        "log_level": "warning",
        "admission_search_in_flight": 1,
        **settings,
    }
    app = create_app(Settings(**options))
    config = uvicorn.Config(
        app,
        port=port,
        http="spyglass.overload.http_protocol:DoorHttpProtocol",
        log_config=None,  # the test process's logging is not the server's to configure
        log_level=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            fill_answer = await client.put("/collections/v", json={"dim": 3, "metric": "cosine"})
            assert fill_answer.status_code == 201
            items = [{"id": k, "vector": v} for k, v in VECTORS.items()]
            assert (await client.post("/collections/v/items", json={"items": items})).is_success
            plain = {"vector": [1.0, 0.0, 0.0], "k": 1}
            assert (await client.post("/collections/v/search", json=plain)).status_code == 200
        yield url, app
    finally:
        server.should_exit = True
        await task


async def hold_search_slot(app: Any) -> Slot:
    """The search lane's only slot, taken by the test."""
    gate = app.state.admission.gates["search"]
    assert gate.lane.limit == 1
    slot = await gate.acquire()
    assert isinstance(slot, Slot)
    return slot


async def until(condition: Any) -> None:
    async with asyncio.timeout(60):  # a hang fails here, not at the suite's timeout
        while not condition():
            await asyncio.sleep(0.005)


def raw_search(k: int) -> bytes:
    body = json.dumps({"vector": [1.0, 0.0, 0.0], "k": k}).encode()
    head = "POST /collections/v/search HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def in_flight(url: str) -> float:
    async with httpx.AsyncClient(base_url=url) as client:
        text = (await client.get("/metrics")).text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("spyglass_http_requests_in_flight ")]
    return float(line.split()[1])


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").strip().split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


async def test_a_search_waits_for_the_slot_and_pipelined_requests_keep_their_order(
    tmp_path: Path,
) -> None:
    async with in_process(tmp_path, workers=1) as (url, app):
        gate = app.state.admission.gates["search"]
        express = app.state.express
        slot = await hold_search_slot(app)
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw_search(1) + raw_search(2))  # the second is pipelined behind
        await writer.drain()
        await until(lambda: len(gate.lane.waiting) == 1)
        assert express.counts_by_way["waited"] == 1
        waiting = await in_flight(url)
        slot.drop()
        first = await read_answer(reader)
        second = await read_answer(reader)
        assert waiting - await in_flight(url) == 1  # the waiting search was in flight
        assert first[0] == second[0] == 200
        assert [len(json.loads(answer[2])["hits"]) for answer in (first, second)] == [1, 2]
        assert first[1]["x-request-id"] != second[1]["x-request-id"]
        writer.write(raw_search(3))  # the connection is still good
        assert len(json.loads((await read_answer(reader))[2])["hits"]) == 3
        writer.close()
        await until(lambda: gate.lane.in_flight == 0)


async def test_a_search_whose_wait_runs_out_gets_the_lanes_503(tmp_path: Path) -> None:
    async with in_process(tmp_path, workers=1, admission_search_queue=4) as (url, app):
        gate = app.state.admission.gates["search"]
        express = app.state.express
        slot = await hold_search_slot(app)
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw_search(1))
        await writer.drain()
        status, headers, body = await read_answer(reader)  # after the lane's longest wait
        assert status == 503
        assert headers["retry-after"] == "1"
        assert headers["content-type"] == "application/problem+json"
        assert re.fullmatch("[0-9a-f]{32}", headers["x-request-id"])
        assert json.loads(body)["status"] == 503
        assert express.counts_by_way["refused"] == 1
        assert gate.lane.stats.shed["queue_delay"] == 1
        slot.drop()
        writer.write(raw_search(2))  # the refusal kept the connection
        assert (await read_answer(reader))[0] == 200
        writer.close()


async def test_a_client_that_leaves_while_waiting_frees_its_slot(tmp_path: Path) -> None:
    async with in_process(tmp_path, workers=1) as (url, app):
        gate = app.state.admission.gates["search"]
        answered = app.state.express.counts_by_way["answered"]
        slot = await hold_search_slot(app)
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw_search(1))
        await writer.drain()
        await until(lambda: len(gate.lane.waiting) == 1)
        writer.close()
        await until(lambda: app.state.admission.census.connections == 0)
        slot.drop()  # granted to the waiter, whose connection is gone: given back
        await until(lambda: gate.lane.in_flight == 0)
        assert app.state.express.counts_by_way["answered"] == answered
        async with httpx.AsyncClient(base_url=url) as client:
            answer = await client.post("/collections/v/search", json={"vector": [1.0, 0, 0]})
        assert answer.status_code == 200


async def test_searches_a_key_may_not_make_are_left_to_the_app(tmp_path: Path) -> None:
    async with in_process(tmp_path, workers=1) as (url, app):
        ring = app.state.key_ring
        reader_key = ring.store.create("default", ["read"], "reader").key
        counts = app.state.express.counts_by_way
        body = {"vector": [1.0, 0.0, 0.0], "k": 1}
        async with httpx.AsyncClient(base_url=url) as client:
            for headers, status, way in [
                ({}, 401, "to_app"),
                ({"Authorization": f"Bearer {reader_key}"}, 200, "answered"),
                ({"X-API-Key": reader_key}, 200, "answered"),
                ({"Authorization": "Bearer not-a-key"}, 401, "to_app"),
            ]:
                before = dict(counts)
                answer = await client.post("/collections/v/search", json=body, headers=headers)
                assert answer.status_code == status, answer.text
                assert counts[way] == before[way] + 1, (headers, counts)


async def test_a_search_that_waited_but_is_not_plain_is_served_by_the_app_on_its_slot(
    tmp_path: Path,
) -> None:
    async with in_process(tmp_path, workers=1) as (url, app):
        gate = app.state.admission.gates["search"]
        slot = await hold_search_slot(app)
        admitted = gate.lane.stats.admitted
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps({"vector": [1.0, 0.0, 0.0], "k": 2, "filter": {"n": 7}}).encode()
        head = f"POST /collections/v/search HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}"
        writer.write(head.encode() + b"\r\n\r\n" + body)
        await writer.drain()
        await until(lambda: len(gate.lane.waiting) == 1)
        slot.drop()
        status, _, answer = await read_answer(reader)
        assert status == 200
        assert json.loads(answer)["hits"] == []  # no item has n = 7: the app's answer
        assert gate.lane.stats.admitted == admitted + 1  # admitted once, not twice
        assert app.state.express.counts_by_way["to_app"] >= 1
        writer.close()
        await until(lambda: gate.lane.in_flight == 0)


async def test_a_slot_waited_for_comes_back_when_the_app_refuses_before_admission(
    tmp_path: Path,
) -> None:
    async with in_process(tmp_path, workers=1) as (url, app):
        gate = app.state.admission.gates["search"]
        new = app.state.key_ring.store.create("default", ["read"], "reader")
        slot = await hold_search_slot(app)
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps({"vector": [1.0, 0.0, 0.0], "filter": {"n": 1}}).encode()
        head = f"POST /collections/v/search HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}"
        writer.write(f"{head}\r\nX-API-Key: {new.key}\r\n\r\n".encode() + body)
        await writer.drain()
        await until(lambda: len(gate.lane.waiting) == 1)
        app.state.key_ring.store.revoke(new.info.id)  # while it waits
        slot.drop()
        status, _, _ = await read_answer(reader)
        assert status == 401  # the app's auth layer, before admission control
        await until(lambda: gate.lane.in_flight == 0)  # the slot it waited for is back
        writer.close()


async def test_a_search_the_engine_refuses_is_answered_by_the_app_and_admitted_once(
    tmp_path: Path,
) -> None:
    async with in_process(tmp_path, workers=1) as (url, app):
        gate = app.state.admission.gates["search"]
        counts = app.state.express.counts_by_way
        admitted, to_app = gate.lane.stats.admitted, counts["to_app"]
        async with httpx.AsyncClient(base_url=url) as client:
            wrong = await client.post("/collections/v/search", json={"vector": [1.0, 0.0]})
        assert wrong.status_code == 422
        assert wrong.headers["content-type"] == "application/problem+json"
        assert counts["to_app"] == to_app + 1  # the express lane tried it, the app answered
        assert gate.lane.stats.admitted == admitted + 1
        await until(lambda: gate.lane.in_flight == 0)
