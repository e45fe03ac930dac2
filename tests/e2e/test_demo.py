"""`spyglass demo`: the README's first command ends in a server with searchable documents."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.server import start

pytestmark = pytest.mark.e2e


def test_demo_serves_the_demo_collection(tmp_path: Path) -> None:
    server = start(tmp_path / "demo", log=tmp_path / "demo.log", command="demo")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            info = client.get("/collections/demo").json()
            assert info["encoder"] == "text" and info["count"] >= 24
            hits = client.post(
                "/collections/demo/search", json={"text": "how do bees make honey", "k": 3}
            ).json()["hits"]
            assert hits[0]["payload"]["source"] == "honeybees.md"
            assert hits[0]["text"] and hits[0]["score"] > hits[-1]["score"]
    finally:
        server.kill()
