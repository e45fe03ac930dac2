"""Faces over HTTP with the real dlib models: enroll, identify, and the original
client's ``POST /upload`` with session confirmation."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageEnhance

from spyglass.app import create_app
from tests.conftest import SHARED_DATA
from tests.conftest import test_settings as make_settings
from tests.routes.helpers import create, problem

pytestmark = pytest.mark.slow

COLOR = SHARED_DATA / "photos" / "color"
ASTRONAUT = (COLOR / "skimage_astronaut.png").read_bytes()
COFFEE = (COLOR / "skimage_coffee.png").read_bytes()


def altered(data: bytes) -> bytes:
    """The same photo, mirrored and brighter: the same person, not the same bytes."""
    image = Image.open(io.BytesIO(data)).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = io.BytesIO()
    ImageEnhance.Brightness(image).enhance(1.2).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
async def org(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A server with the ``acme`` face collection, where Eileen is enrolled."""
    app = create_app(make_settings(tmp_path / "data", face_session_window=4, face_session_needed=3))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as c:
            info = await create(c, "acme", encoder="face")
            assert info["dim"] == 128 and info["metric"] == "l2"
            r = await c.post(
                "/collections/acme/faces",
                data={"person": "eileen"},
                files={"file": ("astronaut.png", ASTRONAUT, "image/png")},
            )
            assert r.status_code == 200, r.text
            yield c


def photo(data: bytes, name: str = "frame.jpg") -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, data, "image/jpeg")}


async def test_identify_success_unknown_and_no_face(org: httpx.AsyncClient) -> None:
    r = await org.post("/collections/acme/identify", files=photo(altered(ASTRONAUT)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and body["person"] == "eileen"
    assert 0 < body["distance"] < 0.6 and body["similarity"] == pytest.approx(1 - body["distance"])
    assert len(body["faces"]) == 1 and body["faces"][0]["box"]["right"] > 0

    strict = await org.post(
        "/collections/acme/identify", files=photo(altered(ASTRONAUT)), data={"threshold": "0.01"}
    )
    assert strict.json()["status"] == "unknown" and strict.json()["person"] is None

    none = await org.post("/collections/acme/identify", files=photo(COFFEE))
    assert none.json() == {
        "status": "no_face",
        "person": None,
        "similarity": None,
        "distance": None,
        "faces": [],
    }


async def test_enrolling_a_photo_without_a_face_is_a_problem(org: httpx.AsyncClient) -> None:
    r = await org.post(
        "/collections/acme/faces", data={"person": "cup"}, files=photo(COFFEE, "coffee.png")
    )
    problem(r, 422, "items[0].image")
    assert (await org.get("/collections/acme")).json()["count"] == 1


async def test_upload_confirms_a_person_over_a_session(org: httpx.AsyncClient) -> None:
    frame = altered(ASTRONAUT)
    first = (await org.post("/upload", files=photo(frame), data={"organize_name": "acme"})).json()
    assert first["status"] == "success" and first["person"] == "eileen"
    assert first["confirmed_person"] is None and first["session_id"]
    session = {"organize_name": "acme", "session_id": first["session_id"]}
    second = (await org.post("/upload", files=photo(COFFEE), data=session)).json()
    assert second["status"] == "no_face" and second["confirmed_person"] is None
    third = (await org.post("/upload", files=photo(frame), data=session)).json()
    assert third["person"] == "eileen" and third["confirmed_person"] is None  # 2 of 3
    fourth = (await org.post("/upload", files=photo(frame), data=session)).json()
    assert fourth["confirmed_person"] == "eileen"  # 3 of the last 4 frames (set above)
    other = (await org.post("/upload", files=photo(frame), data={"organize_name": "acme"})).json()
    assert other["session_id"] != first["session_id"] and other["confirmed_person"] is None


async def test_upload_mistakes_are_problems(org: httpx.AsyncClient) -> None:
    problem(await org.post("/upload", files=photo(ASTRONAUT)), 422, "organize_name")
    r = await org.post("/upload", files=photo(ASTRONAUT), data={"organize_name": "nobody"})
    problem(r, 404, "organize_name")
    problem(
        await org.post("/upload", files=photo(b"not an image"), data={"organize_name": "acme"}),
        422,
        "file",
    )
    await create(org, "vectors", dim=3)
    r = await org.post("/upload", files=photo(ASTRONAUT), data={"organize_name": "vectors"})
    problem(r, 422, "organize_name")


async def test_a_collection_threshold_decides_unknown(org: httpx.AsyncClient) -> None:
    strict = await create(org, "strict", encoder="face", options={"threshold": 0.01})
    assert strict["options"] == {"threshold": 0.01}
    r = await org.post(
        "/collections/strict/faces",
        data={"person": "eileen"},
        files={"file": ("astronaut.png", ASTRONAUT, "image/png")},
    )
    assert r.status_code == 200, r.text
    answer = (
        await org.post("/collections/strict/identify", files=photo(altered(ASTRONAUT)))
    ).json()
    assert answer["status"] == "unknown" and answer["distance"] > 0.01
    loose = await org.post(
        "/collections/strict/identify", files=photo(altered(ASTRONAUT)), data={"threshold": "0.6"}
    )
    assert loose.json()["status"] == "success"  # a request's threshold wins
    for options, field in (({"threshold": 3}, "options.threshold"), ({"k": 1}, "options.k")):
        r = await org.put("/collections/bad", json={"encoder": "face", "options": options})
        problem(r, 422, field)
    r = await org.put("/collections/vec", json={"dim": 3, "options": {"threshold": 0.5}})
    problem(r, 422, "options.threshold")
