"""Image files kept with their items, served back; dominant colors on color hits; the UI's
page and assets served without a key."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
from PIL import Image

from spyglass.app import create_app
from tests import conftest
from tests.routes.helpers import problem


def png(color: str, size: int = 24) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, format="PNG")
    return out.getvalue()


def jpeg(color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(out, format="JPEG")
    return out.getvalue()


async def colors(client: httpx.AsyncClient) -> None:
    await client.put("/collections/pics", json={"encoder": "color"})
    items = [
        {"id": "red/1", "image": base64.b64encode(png("#ff0000")).decode()},
        {
            "id": "navy",
            "image": "data:image/jpeg;base64," + base64.b64encode(jpeg("#000080")).decode(),
        },
    ]
    r = await client.post("/collections/pics/items", json={"items": items})
    assert r.status_code == 200, r.text


async def test_images_are_kept_and_served_with_their_type(client: httpx.AsyncClient) -> None:
    await colors(client)
    r = await client.get("/collections/pics/images/red/1")
    assert r.status_code == 200 and r.content == png("#ff0000")
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff"
    again = await client.get(
        "/collections/pics/images/red/1", headers={"If-None-Match": r.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""
    r = await client.get("/collections/pics/images/navy")
    assert r.headers["content-type"] == "image/jpeg" and r.content == jpeg("#000080")
    problem(await client.get("/collections/pics/images/nope"), 404)
    problem(await client.get("/collections/nope/images/red/1"), 404)
    for sneaky in ("../../spyglass.db", "..%2F..%2Fspyglass.db", "/etc/passwd"):
        problem(await client.get(f"/collections/pics/images/{sneaky}"), 404)


async def test_a_replaced_or_deleted_item_takes_its_image_along(client: httpx.AsyncClient) -> None:
    await colors(client)
    r = await client.post(
        "/collections/pics/items",
        json={"items": [{"id": "navy", "image": base64.b64encode(png("#00ff00")).decode()}]},
    )
    assert r.status_code == 200
    assert (await client.get("/collections/pics/images/navy")).content == png("#00ff00")
    await client.post("/collections/pics/delete", json={"ids": ["navy"]})
    problem(await client.get("/collections/pics/images/navy"), 404)


async def test_keep_images_off_stores_no_files(tmp_path: Path) -> None:
    app = create_app(conftest.test_settings(tmp_path / "data", keep_images=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as client:
            await colors(client)
            problem(await client.get("/collections/pics/images/red/1"), 404)


async def test_color_hits_carry_their_dominant_colors(client: httpx.AsyncClient) -> None:
    await colors(client)
    for rerank in (True, False):
        body = {"colors": ["#ff0000"], "k": 2, "dominant_colors": 3, "rerank": rerank}
        hits = (await client.post("/collections/pics/search", json=body)).json()["hits"]
        assert hits[0]["id"] == "red/1", rerank
        top = hits[0]["colors"][0]
        assert top["hex"].startswith("#") and len(top["hex"]) == 7
        red, green, blue = (int(top["hex"][i : i + 2], 16) for i in (1, 3, 5))
        assert red > 200 and green < 60 and blue < 60, top
        assert 0 < top["weight"] <= 1 and len(hits[0]["colors"]) <= 3
    plain = (await client.post("/collections/pics/search", json={"colors": ["#ff0000"]})).json()
    assert "colors" not in plain["hits"][0]
    await client.put("/collections/words", json={"encoder": "text"})
    r = await client.post("/collections/words/search", json={"text": "a", "dominant_colors": 2})
    problem(r, 422, "dominant_colors")


async def test_the_page_and_its_assets_need_no_key(tmp_path: Path) -> None:
    settings = conftest.test_settings(tmp_path / "data", admin_key="admin-key-0123456789abcdef")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as client:
            page = await client.get("/")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            policy = page.headers["content-security-policy"]
            assert "default-src 'self'" in policy and "blob:" in policy
            assert "unsafe-inline" not in policy
            assert (await client.get("/ui/app.js")).status_code == 200
            problem(await client.get("/ui/nothing-here.js"), 404)
            problem(await client.get("/collections"), 401)  # the data still needs a key


async def test_ui_assets_count_under_one_route_template(client: httpx.AsyncClient) -> None:
    for asset in ("/ui/app.js", "/ui/style.css", "/ui/views/text.js"):
        assert (await client.get(asset)).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'route="/ui/{path}",status="200"} 3.0' in metrics
    assert 'route="unmatched"' not in metrics


async def test_a_photo_search_gives_dominant_colors_too(client: httpx.AsyncClient) -> None:
    await colors(client)
    files = {"file": ("q.png", png("#ff0000", 32), "image/png")}
    r = await client.post(
        "/collections/pics/search/upload", files=files, data={"k": "1", "dominant_colors": "2"}
    )
    hit = r.json()["hits"][0]
    assert hit["id"] == "red/1" and len(hit["colors"]) <= 2 and hit["colors"][0]["hex"]
