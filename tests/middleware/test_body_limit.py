"""Bodies over their route class's limit get a 413 problem, by length or while streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request

from spyglass import problems
from spyglass.app import create_app
from spyglass.middleware.body_limit import install_body_limit
from tests.conftest import test_settings as make_settings


class Reader:
    """Endpoints that record how much of the body they got to read."""

    def __init__(self) -> None:
        self.calls = 0
        self.bytes_read = 0

    async def read(self, request: Request) -> dict[str, int]:
        self.calls += 1
        read = 0
        async for chunk in request.stream():
            read += len(chunk)
            self.bytes_read += len(chunk)
        return {"read": read}


def tiny_app(reader: Reader) -> FastAPI:
    app = FastAPI()
    problems.install(app)
    app.add_api_route("/collections/c/items", reader.read, methods=["POST"])
    app.add_api_route("/collections/c/search", reader.read, methods=["POST"])
    install_body_limit(app, search=100, ingest=1000, other=10)
    return app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


def assert_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:spyglass:problem:payload-too-large"
    assert body["instance"] == response.request.url.path
    assert body["errors"][0]["field"] == "body"
    assert f"at most {limit} bytes" in body["detail"]


async def test_content_length_over_the_limit_is_refused_unread() -> None:
    reader = Reader()
    async with client_for(tiny_app(reader)) as client:
        response = await client.post("/collections/c/search", content=b"x" * 101)
    assert_too_large(response, 100)
    assert reader.calls == 0  # the app never ran


async def test_limits_follow_the_route_class() -> None:
    reader = Reader()
    async with client_for(tiny_app(reader)) as client:
        search = await client.post("/collections/c/search", content=b"x" * 100)
        ingest = await client.post("/collections/c/items", content=b"x" * 1000)
        too_big = await client.post("/collections/c/items", content=b"x" * 1001)
        other = await client.post("/elsewhere", content=b"x" * 11)
    assert search.json() == {"read": 100}
    assert ingest.json() == {"read": 1000}
    assert_too_large(too_big, 1000)
    assert_too_large(other, 10)


async def test_streamed_body_is_cut_off_at_the_limit() -> None:
    reader = Reader()
    async with client_for(tiny_app(reader)) as client:
        response = await client.post("/collections/c/search", content=chunks(10, 30))
    assert "content-length" not in response.request.headers
    assert_too_large(response, 100)
    assert reader.calls == 1
    assert reader.bytes_read == 90  # the chunk crossing the limit was never handed over


async def test_streamed_body_within_the_limit_passes() -> None:
    reader = Reader()
    async with client_for(tiny_app(reader)) as client:
        response = await client.post("/collections/c/search", content=chunks(4, 25))
    assert response.status_code == 200
    assert response.json() == {"read": 100}


@pytest.fixture
async def real_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(tmp_path / "data"))
    install_body_limit(app, search=1024, ingest=4096, other=64)
    async with app.router.lifespan_context(app), client_for(app) as client:
        yield client


async def test_real_app_refuses_oversized_bodies(real_client: httpx.AsyncClient) -> None:
    created = await real_client.put("/collections/c", json={"dim": 2, "encoder": "none"})
    assert created.status_code == 201, created.text
    items = [{"id": str(i), "vector": [1, 0]} for i in range(200)]
    by_length = await real_client.post("/collections/c/items", json={"items": items})
    assert_too_large(by_length, 4096)

    body = b'{"items": [' + b",".join(b'{"id": "x", "vector": [1, 0]}' for _ in range(200)) + b"]}"

    async def streamed() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    by_stream = await real_client.post(
        "/collections/c/items", content=streamed(), headers={"content-type": "application/json"}
    )
    assert_too_large(by_stream, 4096)
    # Nothing was stored, and a small write still works.
    small = await real_client.post(
        "/collections/c/items", json={"items": [{"id": "a", "vector": [1, 0]}]}
    )
    assert small.status_code == 200, small.text
    found = await real_client.post("/collections/c/search", json={"vector": [1, 0], "k": 10})
    assert [hit["id"] for hit in found.json()["hits"]] == ["a"]
