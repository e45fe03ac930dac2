"""Request ids and the JSON access log, on the real app."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from spyglass.app import create_app
from spyglass.auth.keys import SqliteKeyStore
from spyglass.middleware.access_log import (
    ACCESS_LOGGER,
    JsonFormatter,
    RequestIdFilter,
    log_config,
)
from tests import conftest

FORMAT = JsonFormatter()


class Records(logging.Handler):
    """Keeps every record that reaches it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger(ACCESS_LOGGER)
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(before)


async def serve(app: FastAPI, key: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4711))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://spyglass", headers=headers
        ) as c:
            yield c


def build(tmp_path: Path) -> FastAPI:
    app: FastAPI = create_app(conftest.test_settings(tmp_path / "data"))

    async def logs_something() -> dict[str, str]:
        logging.getLogger("spyglass.test").warning("inside a request")
        return {"ok": "yes"}

    app.add_api_route("/test/logs", logs_something)
    return app


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in serve(build(tmp_path)):
        yield c


@pytest.fixture
def acme_key(tmp_path: Path) -> str:
    store = SqliteKeyStore(tmp_path / "data")
    try:
        return store.create("acme", ["read", "write"]).key
    finally:
        store.close()


@pytest.fixture
async def tenant_client(tmp_path: Path, acme_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async for c in serve(build(tmp_path), acme_key):
        yield c


async def test_a_sane_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    given = "abc.DEF_123-" + "x" * 116  # 128 characters, all allowed
    response = await client.get("/livez", headers={"X-Request-ID": given})
    assert response.headers["x-request-id"] == given


@pytest.mark.parametrize(
    "bad",
    ["x" * 129, "has space", "new\\nline", "<script>", "semi;colon", "ünïcode"],
)
async def test_an_insane_request_id_is_replaced(client: httpx.AsyncClient, bad: str) -> None:
    response = await client.get("/livez", headers=[(b"X-Request-ID", bad.encode())])
    returned = response.headers["x-request-id"]
    assert returned != bad
    assert re.fullmatch(r"[0-9a-f]{32}", returned)


async def test_a_request_id_is_generated_when_absent(client: httpx.AsyncClient) -> None:
    first = await client.get("/livez")
    second = await client.get("/nowhere")
    ids = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert len(ids) == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


async def test_one_json_access_line_with_the_route_template(
    client: httpx.AsyncClient, access: Records
) -> None:
    response = await client.post(
        "/collections/private-name/search",
        json={"vector": [1.0, 2.0], "k": 1},
        headers={"X-Request-ID": "req-42"},
    )
    assert response.status_code == 404
    assert len(access.records) == 1
    line = FORMAT.format(access.records[0])
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["route"] == "/collections/{name}/search"
    assert "private-name" not in line
    assert fields["status"] == 404
    assert fields["method"] == "POST"
    assert fields["request_id"] == "req-42"
    assert isinstance(fields["duration_ms"], float) and fields["duration_ms"] >= 0
    assert fields["tenant"] == "default"  # an open server: everyone is the default tenant
    assert fields["client"] == "203.0.113.7"
    assert fields["logger"] == ACCESS_LOGGER


async def test_unrouted_requests_are_logged_as_unmatched(
    client: httpx.AsyncClient, access: Records
) -> None:
    response = await client.get("/no/such/path/secret-thing")
    assert response.status_code == 404
    fields = json.loads(FORMAT.format(access.records[-1]))
    assert fields["route"] == "unmatched"
    assert fields["status"] == 404
    assert "secret-thing" not in FORMAT.format(access.records[-1])


async def test_the_tenant_of_the_key_is_logged(
    tenant_client: httpx.AsyncClient, access: Records
) -> None:
    response = await tenant_client.get("/collections")
    assert response.status_code == 200
    fields = json.loads(FORMAT.format(access.records[-1]))
    assert fields["tenant"] == "acme"
    assert fields["route"] == "/collections"
    assert fields["status"] == 200


async def test_lines_inside_a_request_carry_its_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestIdFilter())
    response = await client.get("/test/logs", headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 200
    inside = [r for r in caplog.records if r.name == "spyglass.test"]
    assert len(inside) == 1
    assert json.loads(FORMAT.format(inside[0]))["request_id"] == "trace-me"


async def test_secrets_and_bodies_never_reach_the_log(
    tenant_client: httpx.AsyncClient, acme_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = {"Authorization": "Bearer sg_000000000000_s3cret", "X-API-Key": "s3cret"}
    answers = [
        await tenant_client.post("/collections/docs/search", json={"text": "s3cret", "k": 1}),
        await tenant_client.post("/collections/docs/search", content=b"{not json s3cret"),
        await tenant_client.get("/livez?token=s3cret"),
        await tenant_client.post("/collections/docs/search", json={"k": 1}, headers=wrong),
    ]
    assert [a.status_code for a in answers] == [404, 400, 200, 401]
    access = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(access) == 4
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert len(server_side) >= 4
    for record in server_side:
        for secret in ("s3cret", acme_key, acme_key.rpartition("_")[2]):
            assert secret not in FORMAT.format(record)
            assert secret not in record.getMessage()
            assert secret not in repr(record.__dict__)


def test_the_formatter_writes_exceptions_into_the_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
        )
    line = json.loads(FORMAT.format(record))
    assert line["msg"] == "failed here"
    assert line["level"] == "error"
    assert "ValueError: boom" in line["exc"]


def test_log_config_makes_every_line_json(capsys: pytest.CaptureFixture[str]) -> None:
    import logging.config

    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access"]
    loggers = [logging.getLogger(name) for name in names]
    saved = [(lg.level, list(lg.handlers), lg.propagate) for lg in loggers]
    try:
        logging.config.dictConfig(log_config("info"))
        logging.getLogger("uvicorn.error").info("started %s", "server")
        logging.getLogger("spyglass.app").warning("plain line")
    finally:
        for lg, (level, handlers, propagate) in zip(loggers, saved, strict=True):
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.propagate = propagate
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["logger"], line["msg"]) for line in lines] == [
        ("uvicorn.error", "started server"),
        ("spyglass.app", "plain line"),
    ]
