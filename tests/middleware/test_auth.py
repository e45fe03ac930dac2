"""Keys, scopes and tenants on the real app: every route, every kind of wrong caller."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from spyglass.app import create_app
from spyglass.auth.keys import KeyStore, SqliteKeyStore
from spyglass.middleware.auth import required_scope
from tests import conftest
from tests.routes.helpers import problem

COLLECTION = "secret"
PICTURES = "pictures"  # acme's color collection, whose item keeps its image file
ITEM = "item1"
ADMIN_KEY = "operator-bootstrap-key-0123456789"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
VECTOR = [1.0, 0.0, 0.0, 0.0]


@dataclass(frozen=True)
class Call:
    """A request a route accepts from its rightful caller (so a refusal is the caller's)."""

    json: Any = None
    files: dict[str, Any] | None = None
    data: dict[str, str] | None = None
    params: dict[str, str] | None = None


def image(field: str = "file") -> dict[str, Any]:
    return {field: ("one.png", PNG, "image/png")}


#: One entry per route of the OpenAPI document; a new route fails the test until it has one.
CALLS: dict[tuple[str, str], Call] = {
    ("GET", "/collections"): Call(),
    ("PUT", "/collections/{name}"): Call(json={"dim": 4, "metric": "cosine"}),
    ("GET", "/collections/{name}"): Call(),
    ("DELETE", "/collections/{name}"): Call(),
    ("POST", "/collections/{name}/items"): Call(json={"items": [{"id": ITEM, "vector": VECTOR}]}),
    ("GET", "/collections/{name}/items/{item_id}"): Call(),
    ("POST", "/collections/{name}/delete"): Call(json={"ids": ["not-there"]}),
    ("POST", "/collections/{name}/search"): Call(json={"vector": VECTOR, "k": 1}),
    ("POST", "/collections/{name}/search/batch"): Call(
        json={"queries": [{"vector": VECTOR, "k": 1}]}
    ),
    ("POST", "/collections/{name}/items/upload"): Call(files=image()),
    ("POST", "/collections/{name}/search/upload"): Call(files=image()),
    ("POST", "/collections/{name}/faces"): Call(files=image(), data={"person": "ann"}),
    ("POST", "/collections/{name}/identify"): Call(files=image()),
    ("POST", "/upload"): Call(files=image(), data={"organize_name": COLLECTION}),
    ("POST", "/search_by_image"): Call(json={"image_base64": base64.b64encode(PNG).decode()}),
    ("POST", "/search_by_text"): Call(json={"query": "a red dress"}),
    ("GET", "/search"): Call(params={"colors": "ff0000"}),
    ("POST", "/admin/keys"): Call(json={"tenant": "acme", "scopes": ["read"]}),
    ("GET", "/admin/keys"): Call(),
    ("DELETE", "/admin/keys/{key_id}"): Call(),
    ("GET", "/status"): Call(),
    ("POST", "/v1/embeddings"): Call(json={"model": "all-MiniLM-L6-v2", "input": "a red dress"}),
    ("GET", "/v1/models"): Call(),
    ("POST", "/collections/{name}/ask"): Call(json={"question": "What is in it?"}),
    ("POST", "/chat"): Call(json={"query": "What is in it?", "session_id": "s1"}),
    ("POST", "/build"): Call(),
    ("GET", "/build"): Call(),
    ("GET", "/collections/{name}/images/{item_id}"): Call(),
}
PUBLIC = {("GET", "/livez"), ("GET", "/readyz")}


@dataclass
class World:
    client: httpx.AsyncClient
    keys: KeyStore
    operator: str  # tenant default, every scope (admin is the operator's alone)
    owner: str  # tenant acme, read and write
    stranger: str  # tenant globex, every scope
    reader: str  # tenant acme, read only
    writer: str  # tenant acme, write only


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    data = tmp_path / "data"
    keys = SqliteKeyStore(data)
    operator = keys.create("default", ["read", "write", "admin"], "operator").key
    owner = keys.create("acme", ["read", "write"], "owner").key
    stranger = keys.create("globex", ["read", "write"], "stranger").key
    reader = keys.create("acme", ["read"]).key
    writer = keys.create("acme", ["write"]).key
    settings = conftest.test_settings(
        data,
        compat_image_collection=COLLECTION,
        compat_color_collection=COLLECTION,
        default_collection=COLLECTION,
    )
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as client:
            yield World(client, keys, operator, owner, stranger, reader, writer)
    keys.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def send(world: World, method: str, template: str, key: str | None) -> httpx.Response:
    call = CALLS[(method, template)]
    name = PICTURES if "/images/" in template else COLLECTION
    path = template.replace("{name}", name).replace("{item_id}", ITEM)
    if "{key_id}" in path:  # a throwaway key, so revoking it harms no other check
        path = path.replace("{key_id}", world.keys.create("acme", ["read"]).info.id)
    return await world.client.request(
        method,
        path,
        json=call.json,
        files=call.files,
        data=call.data,
        params=call.params,
        headers=bearer(key) if key else {},
    )


async def owner_state(world: World) -> None:
    """acme's collection with its one item, as each check starts."""
    headers = bearer(world.owner)
    r = await world.client.put(f"/collections/{COLLECTION}", json={"dim": 4}, headers=headers)
    assert r.status_code in {200, 201}, r.text
    items = {"items": [{"id": ITEM, "vector": VECTOR}]}
    r = await world.client.post(f"/collections/{COLLECTION}/items", json=items, headers=headers)
    assert r.status_code == 200, r.text
    r = await world.client.put(
        f"/collections/{PICTURES}", json={"encoder": "color"}, headers=headers
    )
    assert r.status_code in {200, 201}, r.text
    items = {"items": [{"id": ITEM, "image": base64.b64encode(picture()).decode()}]}
    r = await world.client.post(f"/collections/{PICTURES}/items", json=items, headers=headers)
    assert r.status_code == 200, r.text


def picture() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "#336699").save(out, format="PNG")
    return out.getvalue()


def routes(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


def test_every_route_has_a_call_or_is_public(tmp_path: Path) -> None:
    app = create_app(conftest.test_settings(tmp_path / "data"))
    assert routes(app) == set(CALLS) | PUBLIC
    for method, path in PUBLIC:
        assert required_scope(method, path) is None


async def test_the_route_table_refuses_every_wrong_caller(world: World) -> None:
    """No key: 401. Too few scopes: 403. Another tenant's key: 404 (or, for a route
    that names no collection, an answer about its own tenant). The rightful caller
    gets through, which shows the refusals are about the caller, not the request."""
    checked = 0
    for method, template in sorted(CALLS):
        await owner_state(world)
        where = f"{method} {template}"

        problem(await send(world, method, template, None), 401)

        needed = required_scope(method, template.replace("{name}", COLLECTION))
        lacking = world.writer if needed == "read" else world.reader
        r = await send(world, method, template, lacking)
        problem(r, 403)
        assert needed in r.json()["detail"], where

        r = await send(world, method, template, world.stranger)
        if method == "PUT" and template == "/collections/{name}":
            assert r.status_code == 201, where  # globex's own, new and empty collection
            assert r.json()["count"] == 0
        elif template == "/collections":
            assert r.status_code == 200  # globex's own list: never acme's item
            assert all(c["count"] == 0 for c in r.json()["collections"]), r.text
        elif needed == "admin":
            problem(r, 403)  # only the operator (default tenant) holds admin
        elif template.startswith("/v1/"):
            assert r.status_code == 200, where  # no collection: the same answer for every tenant
        else:
            body = problem(r, 404)
            assert "acme" not in r.text and "~" not in body["detail"], where

        rightful = world.operator if needed == "admin" else world.owner
        r = await send(world, method, template, rightful)
        assert r.status_code not in {401, 403, 404}, (where, r.status_code, r.text)
        assert r.status_code < 500, (where, r.text)
        checked += 1
    assert checked == len(CALLS)


async def test_a_tenant_sees_only_its_own_collections(world: World) -> None:
    await owner_state(world)
    globex = bearer(world.stranger)
    r = await world.client.put("/collections/mine", json={"dim": 4}, headers=globex)
    assert r.status_code == 201 and r.json()["name"] == "mine"
    acme = await world.client.get("/collections", headers=bearer(world.owner))
    assert [c["name"] for c in acme.json()["collections"]] == [PICTURES, COLLECTION]
    theirs = await world.client.get("/collections", headers=globex)
    assert [c["name"] for c in theirs.json()["collections"]] == ["mine"]
    r = await world.client.get(f"/collections/{COLLECTION}/items/{ITEM}", headers=globex)
    problem(r, 404)


async def test_a_name_with_the_tenant_separator_is_never_reached(world: World) -> None:
    await owner_state(world)
    for key in (world.stranger, world.owner):
        r = await world.client.get(f"/collections/acme~{COLLECTION}", headers=bearer(key))
        problem(r, 404)
    r = await world.client.post(
        "/upload",
        files=image(),
        data={"organize_name": f"acme~{COLLECTION}"},
        headers=bearer(world.stranger),
    )
    problem(r, 404, "organize_name")


async def test_problems_name_the_path_the_client_sent(world: World) -> None:
    r = await world.client.get("/collections/nothing", headers=bearer(world.owner))
    body = problem(r, 404)
    assert body["instance"] == "/collections/nothing"


async def test_openai_routes_are_reached_unqualified_with_read_scope(world: World) -> None:
    """``/v1/*`` names no collection: a tenant's path is left as it is, a read key suffices."""
    r = await world.client.get("/v1/models", headers=bearer(world.reader))
    assert r.status_code == 200 and r.json()["data"], r.text
    body = {"model": "no-such-model", "input": "x"}
    r = await world.client.post("/v1/embeddings", json=body, headers=bearer(world.reader))
    problem(r, 404, "model")
    assert r.json()["instance"] == "/v1/embeddings" and "~" not in r.text
    r = await world.client.post("/v1/embeddings", json=body, headers=bearer(world.writer))
    assert "'read'" in problem(r, 403)["detail"]


async def test_a_key_is_accepted_as_x_api_key_too(world: World) -> None:
    await owner_state(world)
    r = await world.client.get(f"/collections/{COLLECTION}", headers={"X-API-Key": world.reader})
    assert r.status_code == 200 and r.json()["count"] == 1


@pytest.mark.parametrize(
    "header",
    [
        {"Authorization": "Bearer sg_000000000000_" + "A" * 43},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": ""},
    ],
)
async def test_unknown_or_garbled_keys_are_401(world: World, header: dict[str, str]) -> None:
    r = await world.client.get("/collections", headers=header)
    body = problem(r, 401)
    assert body["type"] == "urn:spyglass:problem:unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_a_revoked_key_is_refused_at_its_next_request(world: World) -> None:
    created = await world.client.post(
        "/admin/keys", json={"tenant": "acme", "scopes": ["read"]}, headers=bearer(world.operator)
    )
    assert created.status_code == 201
    new = created.json()
    assert new["key"].startswith(f"sg_{new['id']}_")
    assert (await world.client.get("/collections", headers=bearer(new["key"]))).status_code == 200
    listed = await world.client.get("/admin/keys", headers=bearer(world.operator))
    assert new["id"] in [k["id"] for k in listed.json()["keys"]]
    assert new["key"] not in listed.text
    revoked = await world.client.delete(f"/admin/keys/{new['id']}", headers=bearer(world.operator))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    problem(await world.client.get("/collections", headers=bearer(new["key"])), 401)
    # revoked through the CLI's path (another connection to the same file) counts too
    world.keys.revoke(world.reader.split("_")[1])
    problem(await world.client.get("/collections", headers=bearer(world.reader)), 401)


async def test_admin_key_mistakes_are_problems(world: World) -> None:
    admin = bearer(world.operator)
    r = await world.client.post(
        "/admin/keys", json={"tenant": "acme", "scopes": ["admin"]}, headers=admin
    )
    problem(r, 422, "scopes")  # admin reaches every tenant: the operator's alone
    r = await world.client.post("/admin/keys", json={"scopes": ["root"]}, headers=admin)
    problem(r, 422, "scopes")
    r = await world.client.post("/admin/keys", json={"tenant": "a~b"}, headers=admin)
    problem(r, 422, "tenant")
    r = await world.client.post("/admin/keys", json={"scopes": []}, headers=admin)
    problem(r, 422, "scopes")
    problem(await world.client.delete("/admin/keys/nope", headers=admin), 404, "key_id")


async def test_status_masks_secrets(tmp_path: Path) -> None:
    settings = conftest.test_settings(
        tmp_path / "data", admin_key=ADMIN_KEY, redis_url="redis://:hunter2@127.0.0.1:1/0"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as c:
            problem(await c.get("/status"), 401)
            r = await c.get("/status", headers=bearer(ADMIN_KEY))
    assert r.status_code == 200, r.text
    body = r.json()
    assert ADMIN_KEY not in r.text and "hunter2" not in r.text
    assert body["settings"]["admin_key"] == "***"
    assert body["settings"]["redis_url"] == "redis://:***@127.0.0.1:1/0"
    assert body["open"] is False
    assert body["uptime_s"] >= 0


async def test_an_open_server_answers_everyone_as_the_default_tenant(tmp_path: Path) -> None:
    app = create_app(conftest.test_settings(tmp_path / "data"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as c:
            assert (await c.put("/collections/plain", json={"dim": 4})).status_code == 201
            status = await c.get("/status")
            assert status.status_code == 200 and status.json()["open"] is True
            assert [x["name"] for x in status.json()["collections"]] == ["plain"]
            # the first key closes the server: from then on keys are needed
            created = await c.post("/admin/keys", json={"scopes": ["read"]})
            assert created.status_code == 201
            problem(await c.get("/collections"), 401)
            ok = await c.get("/collections", headers=bearer(created.json()["key"]))
            assert [x["name"] for x in ok.json()["collections"]] == ["plain"]


async def test_metrics_need_admin_unless_public(tmp_path: Path) -> None:
    for public, expected in ((False, 401), (True, 200)):
        data = tmp_path / f"data-{public}"
        keys = SqliteKeyStore(data)
        keys.create("acme", ["read"])
        keys.close()
        app = create_app(conftest.test_settings(data, metrics_public=public))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
                assert (await c.get("/metrics")).status_code == expected
                assert (await c.get("/livez")).status_code == 200
                assert (await c.get("/openapi.json")).status_code == 200


async def test_revoking_every_key_does_not_reopen_the_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    keys = SqliteKeyStore(data)
    only = keys.create("acme", ["read"])
    app = create_app(conftest.test_settings(data))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as c:
            assert (await c.get("/collections", headers=bearer(only.key))).status_code == 200
            keys.revoke(only.info.id)
            problem(await c.get("/collections"), 401)
            problem(await c.get("/collections", headers=bearer(only.key)), 401)
    keys.close()


async def test_a_trailing_slash_is_not_redirected_into_the_tenant_path(world: World) -> None:
    await owner_state(world)
    r = await world.client.get(f"/collections/{COLLECTION}/", headers=bearer(world.owner))
    problem(r, 404)
    assert "location" not in r.headers


async def test_a_root_path_does_not_bypass_the_tenant(tmp_path: Path) -> None:
    data = tmp_path / "data"
    keys = SqliteKeyStore(data)
    acme = keys.create("acme", ["read", "write"]).key
    operator = keys.create("default", ["read", "write", "admin"]).key
    keys.close()
    app = create_app(conftest.test_settings(data))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path="/api")
        async with httpx.AsyncClient(transport=transport, base_url="http://x/api") as c:
            put = await c.put("/collections/plain", json={"dim": 2}, headers=bearer(operator))
            assert put.status_code == 201
            problem(await c.get("/collections/plain", headers=bearer(acme)), 404)
            problem(await c.get("/admin/keys", headers=bearer(acme)), 403)
