"""Search results and text embeddings are cached, and a write makes the cache miss at once."""

from __future__ import annotations

import httpx

from tests.routes.helpers import create, upsert_vectors


def cache_counts(metrics: str) -> tuple[float, float]:
    values = {}
    for line in metrics.splitlines():
        for name in ("spyglass_cache_hits_total", "spyglass_cache_misses_total"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    return values["spyglass_cache_hits_total"], values["spyglass_cache_misses_total"]


async def test_a_search_after_an_upsert_sees_the_upsert(client: httpx.AsyncClient) -> None:
    await create(client, "v", dim=2, metric="l2")
    await upsert_vectors(client, "v", {"far": [5.0, 5.0]})
    query = {"vector": [1.0, 1.0], "k": 1}
    first = (await client.post("/collections/v/search", json=query)).json()["hits"]
    again = (await client.post("/collections/v/search", json=query)).json()["hits"]
    assert first == again and first[0]["id"] == "far"
    hits, misses = cache_counts((await client.get("/metrics")).text)
    assert hits >= 1 and misses >= 1
    await upsert_vectors(client, "v", {"near": [1.0, 1.1]})
    after = (await client.post("/collections/v/search", json=query)).json()["hits"]
    assert after[0]["id"] == "near"
    await client.post("/collections/v/delete", json={"ids": ["near"]})
    gone = (await client.post("/collections/v/search", json=query)).json()["hits"]
    assert gone[0]["id"] == "far"


async def test_text_queries_reuse_their_embedding(client: httpx.AsyncClient) -> None:
    await create(client, "t", encoder="text")
    items = [{"id": "b", "text": "Bees make honey"}, {"id": "s", "text": "Ships cross seas"}]
    await client.post("/collections/t/items", json={"items": items})
    one = await client.post("/collections/t/search", json={"text": "honey", "k": 2})
    hits_before, _ = cache_counts((await client.get("/metrics")).text)
    other_k = await client.post("/collections/t/search", json={"text": "honey", "k": 1})
    hits_after, _ = cache_counts((await client.get("/metrics")).text)
    assert one.json()["hits"][0]["id"] == other_k.json()["hits"][0]["id"] == "b"
    assert hits_after == hits_before + 1  # another k: a new result, the same embedding
