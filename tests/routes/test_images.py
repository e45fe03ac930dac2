"""Image items and queries over HTTP: base64 JSON, multipart uploads, hostile files,
and the Chromatica and Find This Fit compatibility routes."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from spyglass.app import create_app
from tests.conftest import SHARED_DATA
from tests.conftest import test_settings as make_settings
from tests.routes.helpers import create, problem

PHOTOS = sorted((SHARED_DATA / "photos" / "color").iterdir())


def png(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
async def colors(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A server whose ``colors`` collection holds a red, a green and a blue image."""
    settings = make_settings(tmp_path / "data", rerank_candidates=50)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as c:
            info = await create(c, "colors", encoder="color")
            assert info["dim"] == 1152 and info["metric"] == "l2"
            items = [
                {"id": name, "image": b64(png(rgb)), "payload": {"file_path": f"{name}.png"}}
                for name, rgb in (("red", (220, 20, 20)), ("green", (20, 200, 40)))
            ]
            r = await c.post("/collections/colors/items", json={"items": items})
            assert r.status_code == 200, r.text
            files = {"file": ("blue.png", png((20, 30, 210)), "image/png")}
            r = await c.post("/collections/colors/items/upload", files=files)
            assert r.status_code == 200, r.text
            yield c


async def test_color_search_by_palette_image_and_upload(colors: httpx.AsyncClient) -> None:
    r = await colors.post("/collections/colors/search", json={"colors": ["#d01818"], "k": 3})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert [h["id"] for h in hits][0] == "red"
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]

    fast = await colors.post(
        "/collections/colors/search", json={"colors": ["0f0"], "k": 3, "rerank": False}
    )
    assert fast.json()["hits"][0]["id"] == "green"

    by_image = await colors.post(
        "/collections/colors/search", json={"image": b64(png((25, 35, 200))), "k": 1}
    )
    assert by_image.json()["hits"][0]["id"] == "blue.png"  # an upload's id is its file name

    upload = await colors.post(
        "/collections/colors/search/upload",
        files={"file": ("q.png", png((200, 30, 30)), "image/png")},
        data={"k": "2"},
    )
    assert upload.status_code == 200, upload.text
    assert upload.json()["hits"][0]["id"] == "red"
    blue = (await colors.get("/collections/colors/items/blue.png")).json()
    assert blue["payload"] == {"file_name": "blue.png", "size_bytes": len(png((20, 30, 210)))}


async def test_chromatica_route_shape_and_modes(colors: httpx.AsyncClient) -> None:
    r = await colors.get("/search", params={"colors": "FF0000,#00ff00", "weights": "0.7,0.3"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["results_count"] == 3
    first = body["results"][0]
    assert first["image_id"] == "red" and first["file_path"] == "red.png" and first["rank"] == 1
    assert first["dominant_colors"] and all(c.startswith("#") for c in first["dominant_colors"])
    distances = [result["distance"] for result in body["results"]]
    assert distances == sorted(distances)
    meta = body["metadata"]
    assert meta["index_size"] == 3 and meta["rerank_time_ms"] > 0
    assert meta["total_time_ms"] >= meta["ann_time_ms"]

    fast = (await colors.get("/search?colors=00F&weights=1.0&k=2&fast_mode=true")).json()
    assert [x["image_id"] for x in fast["results"]][0] == "blue.png"
    assert len(fast["results"]) == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"colors": "GG0000"}, "colors[0]"),
        ({"colors": "FF0000,00FF00", "weights": "1"}, "weights"),
        ({"colors": "FF0000", "weights": "-1"}, "weights[0]"),
        ({"colors": "FF0000", "weights": "x"}, "weights[0]"),
        ({"colors": "FF0000", "k": "0"}, "k"),
        ({}, "colors"),
    ],
)
async def test_chromatica_mistakes_are_problems(
    colors: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    problem(await colors.get("/search", params=params), 422, field)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"image": "not base64 at all!"}, 422, "image"),
        ({"image": b64(b"")}, 422, "image"),
        ({"image": b64(b"GIF89a truncated")}, 422, "image"),
        ({"image": b64(png((1, 2, 3), (1, 1)))}, 422, "image"),
        ({"image_url": "http://127.0.0.1/x.png"}, 422, "image_url"),
        ({"text": "red things"}, 422, "text"),
        ({"image": b64(png((1, 2, 3))), "colors": ["f00"]}, 422, "image"),
        ({"colors": ["f00"], "weights": [1, 2]}, 422, "weights"),
    ],
)
async def test_bad_image_queries_are_problems(
    colors: httpx.AsyncClient, body: dict[str, object], status: int, field: str
) -> None:
    problem(await colors.post("/collections/colors/search", json=body), status, field)


async def test_hostile_uploads_are_problems(colors: httpx.AsyncClient, tmp_path: Path) -> None:
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, "PNG")  # 400 megapixels in a few KB
    cases = {
        "bomb.png": (bomb.getvalue(), 413),
        "empty.png": (b"", 422),
        "text.png": (b"hello, I am not an image", 422),
        "cut.jpg": (PHOTOS[0].read_bytes()[:300], 422),
        "tiny.png": (png((0, 0, 0), (1, 1)), 422),
    }
    for name, (data, status) in cases.items():
        r = await colors.post(
            "/collections/colors/items/upload", files={"file": (name, data, "image/png")}
        )
        problem(r, status, "items[0].image")
    r = await colors.post("/collections/colors/search/upload", data={"k": "1"})
    problem(r, 422, "file")
    r = await colors.post(
        "/collections/colors/items/upload",
        files={"file": ("a.png", png((1, 2, 3)), "image/png")},
        data={"payload": "[1, 2]"},
    )
    problem(r, 422, "payload")
    assert (await colors.get("/collections/colors")).json()["count"] == 3


async def test_image_items_need_an_image_encoder(client: httpx.AsyncClient) -> None:
    await create(client, "t", encoder="text")
    body = {"items": [{"id": "p", "image": b64(png((1, 2, 3)))}]}
    problem(await client.post("/collections/t/items", json=body), 422, "items[0].image")
    await create(client, "v", dim=3)
    problem(await client.post("/collections/v/items", json=body), 422, "items[0].vector")
    both = {"items": [{"id": "p", "vector": [1, 2, 3], "image": b64(png((1, 2, 3)))}]}
    problem(await client.post("/collections/v/items", json=both), 422, "items[0].image")


async def test_unloadable_encoder_is_a_problem_naming_it(client: httpx.AsyncClient) -> None:
    body = problem(await client.put("/collections/c", json={"encoder": "clip"}), 422, "encoder")
    assert "clip_model_path" in body["detail"]


@pytest.mark.slow
async def test_find_this_fit_routes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", compat_image_collection="products")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as c:
            await create(c, "products", encoder="image")
            items = [
                {"id": p.stem, "image": b64(p.read_bytes()), "payload": {"title": p.stem}}
                for p in PHOTOS[:6]
            ]
            r = await c.post("/collections/products/items", json={"items": items})
            assert r.status_code == 200, r.text
            flipped = io.BytesIO()
            Image.open(PHOTOS[2]).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
                flipped, "PNG"
            )
            r = await c.post(
                "/search_by_image", json={"image_base64": b64(flipped.getvalue()), "k": 3}
            )
            assert r.status_code == 200, r.text
            found = r.json()["items"]
            assert found[0]["id"] == PHOTOS[2].stem and found[0]["title"] == PHOTOS[2].stem
            similarities = [item["similarity"] for item in found]
            assert similarities == sorted(similarities, reverse=True)
            assert 0.5 < similarities[0] < 1.0  # absolute: a flipped copy is close, not 1.0
            again = await c.post(
                "/search_by_image", json={"image_base64": b64(flipped.getvalue()), "k": 1}
            )
            assert np.isclose(again.json()["items"][0]["similarity"], similarities[0])
            problem(
                await c.post("/search_by_image", json={"image_base64": "%%"}), 422, "image_base64"
            )
            problem(await c.post("/search_by_text", json={"query": "a cat"}), 422, "query")
            problem(await c.post("/search_by_text", json={}), 422, "query")
