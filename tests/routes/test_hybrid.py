"""Search modes over HTTP: vector, keyword (BM25) and hybrid (both, fused by rank)."""

from __future__ import annotations

import httpx

from tests.routes.helpers import create, problem

TEXTS = {
    "honey": "Honeybees make honey from the nectar they collect from flowers.",
    "hives": "Beekeepers keep colonies in wooden hives.",
    "seine": "The Seine flows through Paris into the English Channel.",
    "normandy": "Normandy is a region in the north of France.",
    "spores": "Ferns reproduce by spores rather than seeds.",
}


async def load(client: httpx.AsyncClient, name: str, encoder: str = "text") -> None:
    if encoder == "text":
        await create(client, name, encoder="text")
        items = [
            {"id": k, "text": t, "payload": {"n": i}} for i, (k, t) in enumerate(TEXTS.items())
        ]
    else:
        await create(client, name, dim=2)
        items = [
            {"id": k, "vector": [1.0, float(i)], "text": t, "payload": {"n": i}}
            for i, (k, t) in enumerate(TEXTS.items())
        ]
    r = await client.post(f"/collections/{name}/items", json={"items": items})
    assert r.status_code == 200, r.text


async def search(client: httpx.AsyncClient, name: str, **body: object) -> list[dict[str, object]]:
    r = await client.post(f"/collections/{name}/search", json=body)
    assert r.status_code == 200, r.text
    hits: list[dict[str, object]] = r.json()["hits"]
    return hits


async def test_each_mode_finds_the_passage(client: httpx.AsyncClient) -> None:
    await load(client, "docs")
    for mode in ("vector", "keyword", "hybrid", None):
        body = {"text": "Which river runs through Paris?", "k": 3}
        if mode is not None:
            body["mode"] = mode
        hits = await search(client, "docs", **body)
        assert hits[0]["id"] == "seine", (mode, hits)
        assert hits[0]["text"] == TEXTS["seine"] and hits[0]["payload"] == {"n": 2}


async def test_hybrid_is_the_default_for_text_collections_and_fuses_ranks(
    client: httpx.AsyncClient,
) -> None:
    await load(client, "docs")
    default = await search(client, "docs", text="bees honey flowers", k=5)
    hybrid = await search(client, "docs", text="bees honey flowers", k=5, mode="hybrid")
    vector = await search(client, "docs", text="bees honey flowers", k=5, mode="vector")
    assert default == hybrid
    # fused scores are sums of weight / (60 + rank): at most 2/61 for the top hit
    assert 0 < hybrid[0]["score"] <= 2 / 61 + 1e-9  # type: ignore[operator]
    assert hybrid[0]["score"] != vector[0]["score"]
    scores = [h["score"] for h in hybrid]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]


async def test_keyword_mode_finds_words_a_meaning_search_ranks_lower(
    client: httpx.AsyncClient,
) -> None:
    await load(client, "docs")
    hits = await search(client, "docs", text="spores", k=5, mode="keyword")
    assert [h["id"] for h in hits] == ["spores"]  # only texts holding the word
    assert await search(client, "docs", text="zeppelin", k=5, mode="keyword") == []


async def test_filters_apply_in_every_mode(client: httpx.AsyncClient) -> None:
    await load(client, "docs")
    for mode in ("vector", "keyword", "hybrid"):
        hits = await search(
            client, "docs", text="bees honey hives", k=5, mode=mode, filter={"n": {"$gte": 1}}
        )
        assert hits and all(h["payload"]["n"] >= 1 for h in hits), (mode, hits)  # type: ignore[index]
        assert "honey" not in [h["id"] for h in hits]


async def test_keyword_search_needs_no_encoder(client: httpx.AsyncClient) -> None:
    await load(client, "raw", encoder="none")
    hits = await search(client, "raw", text="Normandy France", mode="keyword")
    assert hits[0]["id"] == "normandy"
    problem(
        await client.post("/collections/raw/search", json={"text": "France", "mode": "hybrid"}),
        422,
        "mode",
    )
    problem(await client.post("/collections/raw/search", json={"text": "France"}), 422, "text")


async def test_modes_that_need_words_refuse_other_queries(client: httpx.AsyncClient) -> None:
    await load(client, "raw", encoder="none")
    for mode in ("keyword", "hybrid"):
        r = await client.post("/collections/raw/search", json={"vector": [1, 0], "mode": mode})
        problem(r, 422, "mode")
    problem(
        await client.post("/collections/raw/search", json={"vector": [1, 0], "mode": "fuzzy"}),
        422,
        "mode",
    )


async def test_writes_reach_keyword_and_hybrid_results_at_once(client: httpx.AsyncClient) -> None:
    await load(client, "docs")
    assert await search(client, "docs", text="zeppelin", mode="keyword") == []
    r = await client.post(
        "/collections/docs/items",
        json={"items": [{"id": "airship", "text": "A zeppelin is a rigid airship."}]},
    )
    assert r.status_code == 200
    for mode in ("keyword", "hybrid"):
        hits = await search(client, "docs", text="zeppelin", mode=mode)
        assert hits[0]["id"] == "airship", mode
    await client.post("/collections/docs/delete", json={"ids": ["airship"]})
    assert await search(client, "docs", text="zeppelin", mode="keyword") == []
