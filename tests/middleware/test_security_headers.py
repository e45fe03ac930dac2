"""Security headers and CORS, on the real app."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from spyglass.app import create_app
from spyglass.middleware.security_headers import (
    API_CSP,
    cors_options,
)
from tests import conftest

ALLOWED = "https://ui.example.com"


@asynccontextmanager
async def serve(
    tmp_path: Path, *, hsts: bool = False, cors_origins: Iterable[str] = ()
) -> AsyncIterator[httpx.AsyncClient]:
    settings = conftest.test_settings(
        tmp_path / "data", hsts=hsts, hsts_max_age=600, cors_origins=",".join(cors_origins)
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as c:
            yield c


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(tmp_path) as c:
        yield c


def assert_common(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "strict-transport-security" not in response.headers


async def test_json_answers_carry_the_api_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/livez")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert_common(response)
    assert response.headers["content-security-policy"] == API_CSP


async def test_problem_answers_carry_them_too(client: httpx.AsyncClient) -> None:
    for response in [
        await client.get("/collections/missing"),
        await client.get("/no/such/route"),
        await client.delete("/livez"),
    ]:
        assert response.status_code in {404, 405}
        assert response.headers["content-type"] == "application/problem+json"
        assert_common(response)
        assert response.headers["content-security-policy"] == API_CSP
        assert response.json()["status"] == response.status_code


async def test_swagger_ui_may_load_exactly_its_assets(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert_common(response)
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    # Every external asset of the page is allowed, and the inline script by its hash.
    for url in re.findall(r'(?:src|href)="(https://[^/"]+)', response.text):
        assert url in policy
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy
    assert int(response.headers["content-length"]) == len(response.content)


async def test_redoc_may_load_exactly_its_assets(client: httpx.AsyncClient) -> None:
    response = await client.get("/redoc")
    assert response.status_code == 200
    assert_common(response)
    policy = response.headers["content-security-policy"]
    assert "<script>" not in response.text  # no inline script to allow
    for url in re.findall(r'(?:src|href)="(https://[^/"]+)', response.text):
        assert url in policy


async def test_hsts_only_when_enabled(tmp_path: Path) -> None:
    async with serve(tmp_path) as c:
        assert "strict-transport-security" not in (await c.get("/livez")).headers
    async with serve(tmp_path, hsts=True) as c:
        for response in [await c.get("/livez"), await c.get("/nowhere"), await c.get("/docs")]:
            assert response.headers["strict-transport-security"] == (
                "max-age=600; includeSubDomains"
            )


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    assert cors_options([]) is None
    preflight = await client.options(
        "/collections/demo/search",
        headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = await client.get("/livez", headers={"Origin": ALLOWED})
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_preflight_only_for_listed_origins(tmp_path: Path) -> None:
    async with serve(tmp_path, cors_origins=[ALLOWED + "/"]) as c:
        headers = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-api-key",
        }
        allowed = await c.options(
            "/collections/demo/search", headers={"Origin": ALLOWED, **headers}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ALLOWED
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
        assert_common(allowed)

        refused = await c.options(
            "/collections/demo/search", headers={"Origin": "https://evil.example", **headers}
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers

        simple = await c.get("/livez", headers={"Origin": ALLOWED})
        assert simple.headers["access-control-allow-origin"] == ALLOWED
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
        foreign = await c.get("/livez", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in foreign.headers
