"""Admission control: bounded in-flight work per route class, immediate 503 past it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from spyglass import problems
from spyglass.app import create_app
from spyglass.middleware.admission import Admission, Budget, install_admission
from spyglass.middleware.route_class import route_class
from tests.conftest import test_settings as make_settings

ROOMY = Budget(in_flight=100, queue=100, wait_ms=60_000)


class Blocker:
    """Endpoints that wait on an event the test controls, and record what happened."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0
        self.cancelled = 0

    async def wait(self) -> dict[str, str]:
        self.entered += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return {"ok": "yes"}


def tiny_app(blocker: Blocker, **budgets: Budget) -> tuple[FastAPI, Admission]:
    """A FastAPI app with one blocking endpoint per route class, admission installed."""
    app = FastAPI()
    problems.install(app)
    app.add_api_route("/collections/c/search", blocker.wait, methods=["POST"])
    app.add_api_route("/collections/c/items", blocker.wait, methods=["POST"])
    app.add_api_route("/collections/c", blocker.wait, methods=["GET"])
    app.add_api_route("/livez", blocker.wait, methods=["GET"])
    values = {"search": ROOMY, "ingest": ROOMY, "other": ROOMY} | budgets
    admission = install_admission(app, **values)
    return app, admission


@pytest.fixture
def blocker() -> Blocker:
    return Blocker()


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until ``condition`` holds (no clock involved)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:spyglass:problem:unavailable"
    assert body["status"] == 503
    assert body["instance"] == response.request.url.path


async def test_full_queue_is_shed_at_once(blocker: Blocker) -> None:
    # A target as long as the wait: the third's overflow makes the lane overloaded, and
    # however slow the machine, the second must not have waited past the target by then.
    budget = Budget(in_flight=1, queue=1, wait_ms=600_000, target_ms=600_000)
    app, admission = tiny_app(blocker, search=budget)
    stats = admission.stats["search"]
    async with client_for(app) as client:
        first = asyncio.create_task(client.post("/collections/c/search"))
        await until(lambda: blocker.entered == 1)
        second = asyncio.create_task(client.post("/collections/c/search"))
        await until(lambda: stats.queued == 1)
        # The first still holds the slot and the second the queue: the third is
        # answered without anything being released.
        third = await client.post("/collections/c/search")
        assert_unavailable(third)
        assert "search" in third.json()["detail"]
        assert (stats.in_flight, stats.queued, stats.shed) == (1, 1, 1)
        assert not first.done() and not second.done()
        blocker.release.set()
        assert (await first).status_code == 200
        assert (await second).status_code == 200
    assert (stats.in_flight, stats.queued, stats.admitted) == (0, 0, 2)


async def test_queue_wait_expiry_is_503(blocker: Blocker) -> None:
    app, admission = tiny_app(blocker, search=Budget(in_flight=1, queue=5, wait_ms=10))
    stats = admission.stats["search"]
    async with client_for(app) as client:
        first = asyncio.create_task(client.post("/collections/c/search"))
        await until(lambda: blocker.entered == 1)
        waited = await client.post("/collections/c/search")  # the slot is never freed
        assert_unavailable(waited)
        assert (stats.queued, stats.shed) == (0, 1)
        blocker.release.set()
        assert (await first).status_code == 200
    assert stats.in_flight == 0


async def test_ingest_saturated_does_not_block_search(blocker: Blocker) -> None:
    app, admission = tiny_app(blocker, ingest=Budget(in_flight=1, queue=0, wait_ms=0))
    async with client_for(app) as client:
        writing = asyncio.create_task(client.post("/collections/c/items"))
        await until(lambda: blocker.entered == 1)
        assert_unavailable(await client.post("/collections/c/items"))
        searching = asyncio.create_task(client.post("/collections/c/search"))
        await until(lambda: admission.stats["search"].in_flight == 1)
        assert admission.stats["ingest"].shed == 1
        blocker.release.set()
        assert (await searching).status_code == 200
        assert (await writing).status_code == 200


async def test_time_budget_cancels_and_frees_the_slot(blocker: Blocker) -> None:
    app, admission = tiny_app(
        blocker, search=Budget(in_flight=1, queue=0, wait_ms=0, timeout_s=0.05)
    )
    stats = admission.stats["search"]
    async with client_for(app) as client:
        over = await client.post("/collections/c/search")  # the event is never set
        assert_unavailable(over)
        assert "budget" in over.json()["detail"]
        assert blocker.cancelled == 1
        assert (stats.in_flight, stats.timed_out) == (0, 1)
        blocker.release.set()
        assert (await client.post("/collections/c/search")).status_code == 200
    assert stats.admitted == 2


async def test_apps_own_timeout_error_is_not_a_budget_expiry() -> None:
    async def flaky() -> None:
        raise TimeoutError("upstream model timed out")

    app = FastAPI()
    app.add_api_route("/collections/c/search", flaky, methods=["POST"])
    admission = install_admission(
        app, search=Budget(1, 0, 0, timeout_s=60), ingest=ROOMY, other=ROOMY
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/collections/c/search")
    assert response.status_code == 500
    assert admission.stats["search"].timed_out == 0
    assert admission.stats["search"].in_flight == 0


async def test_health_is_never_shed(blocker: Blocker) -> None:
    tight = Budget(in_flight=1, queue=0, wait_ms=0)
    app, admission = tiny_app(blocker, search=tight, ingest=tight, other=tight)
    async with client_for(app) as client:
        held = asyncio.create_task(client.get("/collections/c"))
        await until(lambda: blocker.entered == 1)
        assert_unavailable(await client.get("/collections/c"))
        probes = [asyncio.create_task(client.get("/livez")) for _ in range(3)]
        await until(lambda: blocker.entered == 4)  # all three probes are running
        blocker.release.set()
        assert [(await p).status_code for p in probes] == [200, 200, 200]
        assert (await held).status_code == 200
    assert "health" not in admission.stats


async def test_cancelled_waiter_leaves_the_line(blocker: Blocker) -> None:
    app, admission = tiny_app(blocker, search=Budget(in_flight=1, queue=1, wait_ms=600_000))
    stats = admission.stats["search"]
    async with client_for(app) as client:
        first = asyncio.create_task(client.post("/collections/c/search"))
        await until(lambda: blocker.entered == 1)
        waiting = asyncio.create_task(client.post("/collections/c/search"))
        await until(lambda: stats.queued == 1)
        waiting.cancel()
        await until(waiting.done)
        assert stats.queued == 0
        blocker.release.set()
        assert (await first).status_code == 200
        assert (await client.post("/collections/c/search")).status_code == 200
    assert (stats.in_flight, stats.queued) == (0, 0)


@pytest.fixture
async def real_app(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, Admission]]:
    app = create_app(make_settings(tmp_path / "data"))
    admission = install_admission(app, search=ROOMY, ingest=ROOMY, other=ROOMY)
    async with app.router.lifespan_context(app):
        yield app, admission


async def test_real_app_requests_pass_and_are_counted(
    real_app: tuple[FastAPI, Admission],
) -> None:
    app, admission = real_app
    async with client_for(app) as client:
        created = await client.put("/collections/c", json={"dim": 2, "encoder": "none"})
        assert created.status_code == 201, created.text
        upserted = await client.post(
            "/collections/c/items", json={"items": [{"id": "a", "vector": [1, 0]}]}
        )
        assert upserted.status_code == 200, upserted.text
        found = await client.post("/collections/c/search", json={"vector": [1, 0], "k": 1})
        assert found.status_code == 200, found.text
        assert (await client.get("/livez")).status_code == 200
    assert admission.stats["ingest"].admitted == 2
    assert admission.stats["search"].admitted == 1
    assert all(s.in_flight == 0 for s in admission.stats.values())


# Every route of the real app and its class. A new route fails this test until it
# is classified in route_class.py and listed here.
EXPECTED = {
    ("GET", "/livez"): "health",
    ("GET", "/readyz"): "health",
    ("GET", "/collections"): "other",
    ("GET", "/collections/{name}"): "other",
    ("PUT", "/collections/{name}"): "ingest",
    ("DELETE", "/collections/{name}"): "ingest",
    ("POST", "/collections/{name}/items"): "ingest",
    ("GET", "/collections/{name}/items/{item_id}"): "other",
    ("POST", "/collections/{name}/delete"): "ingest",
    ("POST", "/collections/{name}/search"): "search",
    ("POST", "/collections/{name}/search/batch"): "search",
    ("POST", "/collections/{name}/items/upload"): "ingest",
    ("POST", "/collections/{name}/search/upload"): "search",
    ("POST", "/collections/{name}/faces"): "ingest",
    ("POST", "/collections/{name}/identify"): "search",
    ("POST", "/upload"): "search",
    ("POST", "/search_by_image"): "search",
    ("POST", "/search_by_text"): "search",
    ("GET", "/search"): "search",
    ("POST", "/admin/keys"): "admin",
    ("GET", "/admin/keys"): "admin",
    ("DELETE", "/admin/keys/{key_id}"): "admin",
    ("GET", "/status"): "admin",
    ("POST", "/v1/embeddings"): "search",
    ("GET", "/v1/models"): "other",
    ("POST", "/collections/{name}/ask"): "ask",
    ("POST", "/chat"): "ask",
    ("POST", "/build"): "admin",
    ("GET", "/build"): "admin",
    ("GET", "/collections/{name}/images/{item_id}"): "other",
}


def concrete(template: str) -> str:
    return template.replace("{name}", "my-coll").replace("{item_id}", "a/search")


def test_every_route_of_the_app_is_classified(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path / "data"))
    seen = {}
    # FastAPI 0.165 nests included routers, so the OpenAPI document is the flat list.
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            seen[(method.upper(), path)] = route_class(method.upper(), concrete(path))
    assert seen == EXPECTED


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/metrics", "health"),
        ("GET", "/status", "admin"),
        ("POST", "/admin/reindex", "admin"),
        ("GET", "/administrator", "other"),
        ("GET", "/docs", "other"),
        ("GET", "/collections/c/search", "other"),
        ("post", "/collections/c/search", "search"),
        ("POST", "/search", "other"),
        ("HEAD", "/search", "search"),
        ("GET", "/collections/c/items/some/id/upload", "other"),
        ("POST", "/v1/embeddings", "search"),
        ("GET", "/v1/embeddings", "other"),
        ("POST", "/v1/models", "other"),
        ("GET", "/chat", "other"),
        ("GET", "/collections/c/ask", "other"),
        ("POST", "/collections/c/ask/more", "other"),
    ],
)
def test_route_class_edges(method: str, path: str, expected: str) -> None:
    assert route_class(method, path) == expected
