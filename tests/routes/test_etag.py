"""GET answers carry an ETag; revalidating gets 304 until a write changes them."""

from __future__ import annotations

import httpx

from tests.routes.helpers import create, upsert_vectors


async def test_collections_and_items_revalidate_until_a_write(client: httpx.AsyncClient) -> None:
    await create(client, "v", dim=2)
    await upsert_vectors(client, "v", {"a": [1.0, 0.0]})
    for url in ("/collections", "/collections/v", "/collections/v/items/a"):
        first = await client.get(url)
        tag = first.headers["etag"]
        assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
        same = await client.get(url, headers={"If-None-Match": tag})
        assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == tag
        weak = await client.get(url, headers={"If-None-Match": f'"other", W/{tag}'})
        assert weak.status_code == 304
        assert (await client.get(url, headers={"If-None-Match": '"other"'})).status_code == 200
        assert (await client.get(url, headers={"If-None-Match": "*"})).status_code == 304
    tag = (await client.get("/collections/v/items/a")).headers["etag"]
    await upsert_vectors(client, "v", {"a": [0.0, 1.0]})
    changed = await client.get("/collections/v/items/a", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.json()["vector"] == [0.0, 1.0]
    assert changed.headers["etag"] != tag
