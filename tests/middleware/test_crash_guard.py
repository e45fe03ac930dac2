"""A bug is a 500 problem that still carries the request id, the security headers and
reaches the access log and the metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from spyglass.app import create_app
from tests import conftest


async def test_a_bug_is_a_500_problem_seen_by_every_layer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(conftest.test_settings(tmp_path / "data"))

    async def boom() -> None:
        raise RuntimeError("a bug, with a secret: s3cret")

    app.add_api_route("/boom", boom)
    caplog.set_level(logging.INFO)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as client:
            r = await client.get("/boom", headers={"X-Request-ID": "trace-42"})
            metrics = (await client.get("/metrics")).text
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"] == "internal error; see the server log"
    assert "s3cret" not in r.text
    assert r.headers["x-request-id"] == "trace-42"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert 'route="/boom"' in metrics and 'status="500"' in metrics
    crash = [rec for rec in caplog.records if rec.getMessage().startswith("unhandled error")]
    assert len(crash) == 1 and crash[0].exc_info is not None
    access = [rec for rec in caplog.records if rec.name == "spyglass.access"]
    assert access and access[-2].__dict__.get("fields", {}).get("status") == 500
