"""Small helpers for API tests."""

from __future__ import annotations

from typing import Any

import httpx


async def create(client: httpx.AsyncClient, name: str, **body: Any) -> dict[str, Any]:
    r = await client.put(f"/collections/{name}", json=body)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def upsert_vectors(
    client: httpx.AsyncClient, name: str, vectors: dict[str, list[float]]
) -> None:
    items = [{"id": key, "vector": value} for key, value in vectors.items()]
    r = await client.post(f"/collections/{name}/items", json={"items": items})
    assert r.status_code == 200, r.text


def problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """Assert ``response`` is an RFC 9457 problem with ``status`` naming ``field``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:spyglass:problem:")
    assert body["title"] and body["detail"]
    if field is not None:
        fields = [e["field"] for e in body.get("errors", [])]
        assert field in fields, (field, body)
    return body
