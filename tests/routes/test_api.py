"""The HTTP API in-process: shapes, status codes and behaviour of every route."""

from __future__ import annotations

import httpx
import numpy as np

from tests.routes.helpers import create, problem, upsert_vectors


async def test_collection_lifecycle(client: httpx.AsyncClient) -> None:
    r = await client.put("/collections/docs", json={"dim": 4, "metric": "l2"})
    assert r.status_code == 201
    body = r.json()
    assert body["name"] == "docs" and body["dim"] == 4 and body["metric"] == "l2"
    assert body["encoder"] == "none" and body["count"] == 0
    assert body["index"] == {
        "m": 16,
        "ef_construction": 200,
        "ef_search": 48,
        "quantization": "none",
        "recall_target": 0.95,
        "rescore": True,
        "oversample": 1.0,
    }

    again = await client.put("/collections/docs", json={"dim": 4, "metric": "l2"})
    assert again.status_code == 200

    listed = await client.get("/collections")
    assert [c["name"] for c in listed.json()["collections"]] == ["docs"]

    assert (await client.delete("/collections/docs")).status_code == 204
    assert (await client.get("/collections/docs")).status_code == 404


async def test_quantization_is_chosen_per_collection_and_refused_where_missing(
    client: httpx.AsyncClient,
) -> None:
    r = await client.put("/collections/small", json={"dim": 8, "index": {"quantization": "sq8"}})
    assert r.status_code == 201
    assert r.json()["index"]["quantization"] == "sq8" and r.json()["index"]["oversample"] == 3.0
    r = await client.put(
        "/collections/tiny", json={"dim": 8, "index": {"quantization": "pq", "oversample": 5}}
    )
    assert r.json()["index"]["oversample"] == 5.0
    await upsert_vectors(client, "small", {"a": [1.0] * 8, "b": [1.0, -1.0] * 4})
    hits = (await client.post("/collections/small/search", json={"vector": [1.0] * 8})).json()
    assert hits["hits"][0]["id"] == "a"

    r = await client.put("/collections/bits", json={"dim": 8, "index": {"quantization": "binary"}})
    body = problem(r, 422, "index.quantization")
    assert "binary" in body["detail"] and "sq8" in body["detail"]
    r = await client.put("/collections/odd", json={"dim": 8, "index": {"quantization": "int4"}})
    problem(r, 422, "index.quantization")


async def test_version_changes_on_every_write(client: httpx.AsyncClient) -> None:
    await create(client, "v", dim=3)
    seen = [(await client.get("/collections/v")).json()["version"]]
    await upsert_vectors(client, "v", {"a": [1, 0, 0]})
    seen.append((await client.get("/collections/v")).json()["version"])
    await client.post("/collections/v/delete", json={"ids": ["a"]})
    seen.append((await client.get("/collections/v")).json()["version"])
    assert seen == sorted(set(seen))


async def test_items_round_trip(client: httpx.AsyncClient) -> None:
    await create(client, "c", dim=3)
    r = await client.post(
        "/collections/c/items",
        json={"items": [{"id": "a1", "vector": [1, 2, 3], "payload": {"color": "red"}}]},
    )
    assert r.status_code == 200 and r.json()["upserted"] == 1
    item = (await client.get("/collections/c/items/a1")).json()
    assert item == {
        "id": "a1",
        "vector": [1.0, 2.0, 3.0],
        "text": None,
        "payload": {"color": "red"},
    }
    deleted = await client.post("/collections/c/delete", json={"ids": ["a1", "zz"]})
    assert deleted.json()["deleted"] == 1
    assert (await client.get("/collections/c/items/a1")).status_code == 404


async def test_vector_search_scores_and_filters(client: httpx.AsyncClient) -> None:
    await create(client, "s", dim=2, metric="cosine")
    await client.post(
        "/collections/s/items",
        json={
            "items": [
                {"id": "east", "vector": [1, 0], "payload": {"color": "red", "size": 1}},
                {"id": "north", "vector": [0, 1], "payload": {"color": "blue", "size": 2}},
                {"id": "northeast", "vector": [1, 1], "payload": {"color": "red", "size": 3}},
            ]
        },
    )
    r = await client.post("/collections/s/search", json={"vector": [1, 0.1], "k": 2})
    assert r.status_code == 200
    body = r.json()
    assert [h["id"] for h in body["hits"]] == ["east", "northeast"]
    assert body["hits"][0]["score"] > body["hits"][1]["score"]
    assert body["hits"][0]["payload"] == {"color": "red", "size": 1}
    assert body["took_ms"] >= 0

    r = await client.post(
        "/collections/s/search",
        json={
            "vector": [1, 0],
            "k": 5,
            "filter": {"$or": [{"color": "blue"}, {"size": {"$gt": 2}}]},
        },
    )
    assert [h["id"] for h in r.json()["hits"]] == ["northeast", "north"]


async def test_batch_search(client: httpx.AsyncClient) -> None:
    await create(client, "b", dim=2)
    await upsert_vectors(client, "b", {"x": [1, 0], "y": [0, 1]})
    r = await client.post(
        "/collections/b/search/batch",
        json={"queries": [{"vector": [1, 0], "k": 1}, {"vector": [0, 1], "k": 1}]},
    )
    assert r.status_code == 200
    assert [[h["id"] for h in hits] for hits in r.json()["results"]] == [["x"], ["y"]]


async def test_l2_and_ip_scores_are_higher_for_closer(client: httpx.AsyncClient) -> None:
    for metric in ("l2", "ip"):
        await create(client, metric, dim=2, metric=metric)
        await upsert_vectors(client, metric, {"near": [1, 1], "far": [5, -5]})
        r = await client.post(f"/collections/{metric}/search", json={"vector": [1, 1], "k": 2})
        hits = r.json()["hits"]
        assert hits[0]["id"] == "near" and hits[0]["score"] > hits[1]["score"]
    hits = (await client.post("/collections/l2/search", json={"vector": [1, 1]})).json()["hits"]
    assert np.isclose(hits[0]["score"], 0.0, atol=1e-5)
    assert np.isclose(hits[1]["score"], -np.hypot(4, 6), atol=1e-4)


async def test_health_and_docs(client: httpx.AsyncClient) -> None:
    assert (await client.get("/livez")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["store"] == "ok"
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/collections/{name}/search" in spec["paths"]


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    problem(await client.get("/nope"), 404)
    problem(await client.patch("/collections"), 405)


async def test_ids_with_slashes_can_be_read_back(client: httpx.AsyncClient) -> None:
    await create(client, "p", dim=2)
    await upsert_vectors(client, "p", {"docs/a.md#1": [1, 0]})
    r = await client.get("/collections/p/items/docs/a.md%231")
    assert r.status_code == 200 and r.json()["id"] == "docs/a.md#1"


async def test_a_collection_reports_how_far_its_index_has_come(
    client: httpx.AsyncClient,
) -> None:
    await create(client, "s", dim=3)
    await upsert_vectors(client, "s", {"a": [1, 0, 0], "b": [0, 1, 0], "c": [0, 0, 1]})
    await client.post("/collections/s/delete", json={"ids": ["c"]})
    state = (await client.get("/collections/s")).json()["index_state"]
    assert state["tail"] == 2 and state["indexed"] == 0 and state["deleted"] == 0
    assert state["building"] is False and state["last_build_s"] is None
    listed = (await client.get("/collections")).json()["collections"]
    assert listed[0]["index_state"] is None  # the list stays one query
