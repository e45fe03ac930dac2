"""Every client mistake is a 4xx problem+json naming the field; none is a 5xx."""

from __future__ import annotations

import httpx
import pytest

from tests.routes.helpers import create, problem


@pytest.fixture
async def vectors(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await create(client, "v", dim=3)
    return client


async def test_unknown_collection(client: httpx.AsyncClient) -> None:
    problem(await client.get("/collections/missing"), 404, "name")
    problem(await client.post("/collections/missing/search", json={"vector": [1]}), 404, "name")
    problem(
        await client.post(
            "/collections/missing/items", json={"items": [{"id": "a", "vector": [1]}]}
        ),
        404,
        "name",
    )
    problem(await client.delete("/collections/missing"), 404, "name")


async def test_unknown_item(vectors: httpx.AsyncClient) -> None:
    problem(await vectors.get("/collections/v/items/nope"), 404, "id")


@pytest.mark.parametrize("name", ["-bad", "has space", "x" * 65, "semi;colon", "a/b"])
async def test_bad_collection_name(client: httpx.AsyncClient, name: str) -> None:
    r = await client.put(f"/collections/{name}", json={"dim": 3})
    assert r.status_code in (404, 422)
    problem(r, r.status_code)


async def test_bad_collection_name_names_the_field(client: httpx.AsyncClient) -> None:
    problem(await client.put("/collections/-bad", json={"dim": 3}), 422, "name")


async def test_collection_settings_are_checked(client: httpx.AsyncClient) -> None:
    problem(await client.put("/collections/c", json={}), 422, "dim")
    problem(await client.put("/collections/c", json={"dim": 0}), 422, "dim")
    problem(await client.put("/collections/c", json={"dim": 3, "metric": "hamming"}), 422, "metric")
    problem(await client.put("/collections/c", json={"dim": 3, "encoder": "magic"}), 422, "encoder")
    problem(await client.put("/collections/c", json={"dim": 3, "index": {"m": 1}}), 422, "index.m")
    problem(await client.put("/collections/c", json={"dim": 3, "colour": 1}), 422, "colour")
    await create(client, "c", dim=3)
    problem(await client.put("/collections/c", json={"dim": 4}), 409, "name")


async def test_wrong_dimension(vectors: httpx.AsyncClient) -> None:
    items = {"items": [{"id": "a", "vector": [1, 2, 3]}, {"id": "b", "vector": [1, 2]}]}
    problem(await vectors.post("/collections/v/items", json=items), 422, "items[1].vector")
    problem(await vectors.post("/collections/v/search", json={"vector": [1, 2]}), 422, "vector")


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity(vectors: httpx.AsyncClient, bad: str) -> None:
    body = '{"items": [{"id": "a", "vector": [1, ' + bad + ", 3]}]}"
    r = await vectors.post(
        "/collections/v/items", content=body, headers={"content-type": "application/json"}
    )
    problem(r, 422, "items[0].vector")
    r = await vectors.post(
        "/collections/v/search",
        content='{"vector": [1, ' + bad + ", 3]}",
        headers={"content-type": "application/json"},
    )
    problem(r, 422, "vector")


async def test_zero_vector_under_cosine(vectors: httpx.AsyncClient) -> None:
    items = {"items": [{"id": "a", "vector": [0, 0, 0]}]}
    problem(await vectors.post("/collections/v/items", json=items), 422, "items[0].vector")


async def test_empty_and_oversized_batches(vectors: httpx.AsyncClient) -> None:
    problem(await vectors.post("/collections/v/items", json={"items": []}), 422, "items")
    many = {"items": [{"id": str(i), "vector": [1, 1, 1]} for i in range(51)]}
    problem(await vectors.post("/collections/v/items", json=many), 413, "items")
    problem(await vectors.post("/collections/v/delete", json={"ids": []}), 422, "ids")
    queries = {"queries": [{"vector": [1, 1, 1]}] * 51}
    problem(await vectors.post("/collections/v/search/batch", json=queries), 413, "queries")


async def test_item_shape(vectors: httpx.AsyncClient) -> None:
    no_id = {"items": [{"vector": [1, 2, 3]}]}
    problem(await vectors.post("/collections/v/items", json=no_id), 422, "items[0].id")
    empty_id = {"items": [{"id": "", "vector": [1, 2, 3]}]}
    problem(await vectors.post("/collections/v/items", json=empty_id), 422, "items[0].id")
    nothing = {"items": [{"id": "a"}]}
    problem(await vectors.post("/collections/v/items", json=nothing), 422, "items[0]")
    text_only = {"items": [{"id": "a", "text": "hello"}]}
    problem(await vectors.post("/collections/v/items", json=text_only), 422, "items[0].vector")
    bad_payload = {"items": [{"id": "a", "vector": [1, 2, 3], "payload": [1]}]}
    problem(await vectors.post("/collections/v/items", json=bad_payload), 422, "items[0].payload")
    strings = {"items": [{"id": "a", "vector": ["x", 2, 3]}]}
    problem(await vectors.post("/collections/v/items", json=strings), 422, "items[0].vector[0]")


async def test_search_shape(vectors: httpx.AsyncClient) -> None:
    url = "/collections/v/search"
    problem(await vectors.post(url, json={"vector": [1, 1, 1], "k": 101}), 422, "k")
    problem(await vectors.post(url, json={"vector": [1, 1, 1], "k": 0}), 422, "k")
    problem(await vectors.post(url, json={"vector": [1, 1, 1], "ef": 0}), 422, "ef")
    problem(await vectors.post(url, json={}), 422, "vector")
    problem(await vectors.post(url, json={"vector": [1, 1, 1], "text": "x"}), 422, "vector")
    problem(await vectors.post(url, json={"text": "hello"}), 422, "text")
    batch = {"queries": [{"vector": [1, 1, 1]}, {"vector": [1, 1, 1], "k": 1000}]}
    problem(await vectors.post(url + "/batch", json=batch), 422, "queries[1].k")


@pytest.mark.parametrize(
    ("flt", "field"),
    [
        ({"color": {"$regex": "r.*"}}, "filter.color.$regex"),
        ({"$and": []}, "filter.$and"),
        ({"n": {"$gt": [1]}}, "filter.n.$gt"),
        ({"$or": [{"a": 1}, {"b": {"$in": 3}}]}, "filter.$or[1].b.$in"),
        ({"$nope": 1}, "filter.$nope"),
    ],
)
async def test_malformed_filter(vectors: httpx.AsyncClient, flt: object, field: str) -> None:
    r = await vectors.post("/collections/v/search", json={"vector": [1, 1, 1], "filter": flt})
    body = problem(r, 422, field)
    assert body["type"] == "urn:spyglass:problem:invalid-filter"


async def test_bad_json(vectors: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json"}
    r = await vectors.post("/collections/v/items", content=b'{"items": [', headers=headers)
    problem(r, 400, "body")
    r = await vectors.post("/collections/v/search", content=b"not json", headers=headers)
    problem(r, 400, "body")


async def test_body_that_is_not_an_object(vectors: httpx.AsyncClient) -> None:
    problem(await vectors.post("/collections/v/search", json=[1, 2]), 422)
    problem(await vectors.post("/collections/v/items", json="items"), 422)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ('{"n": NaN}', "items[0].payload.n"),
        ('{"a": {"b": [1, Infinity]}}', "items[0].payload.a.b[1]"),
        ('{"big": 123456789012345678901234567890, "x": NaN}', "items[0].payload.big"),
        ('{"deep": ' + "[" * 40 + "]" * 40 + "}", "items[0].payload.deep" + "[0]" * 32),
    ],
)
async def test_payload_must_be_plain_json(
    vectors: httpx.AsyncClient, payload: str, field: str
) -> None:
    body = '{"items": [{"id": "a", "vector": [1, 2, 3], "payload": ' + payload + "}]}"
    r = await vectors.post(
        "/collections/v/items", content=body, headers={"content-type": "application/json"}
    )
    problem(r, 422, field)
