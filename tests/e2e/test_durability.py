"""kill -9 right after a 2xx loses nothing: the write was durable when acknowledged."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.server import running, start

pytestmark = pytest.mark.e2e


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "server.log"
    acknowledged: list[str] = []
    for round_ in range(3):
        server = start(data, workers=2, log=log)
        with httpx.Client(timeout=30) as client:
            if round_ == 0:
                # l2: every vector below is at least 1 from every other, so the nearest
                # neighbour of an item's own vector is that item, with no float tie.
                client.put(f"{server.url}/collections/d", json={"dim": 8, "metric": "l2"})
            batch = [
                {"id": f"r{round_}-{i}", "vector": [1.0 + i, 2, 3, 4, 5, 6, 7, round_ + 1.0]}
                for i in range(200)
            ]
            r = client.post(f"{server.url}/collections/d/items", json={"items": batch})
            assert r.status_code == 200
            acknowledged += [item["id"] for item in batch]
        server.kill()

    with running(data, workers=1, log=log) as server, httpx.Client(timeout=30) as client:
        info = client.get(f"{server.url}/collections/d").json()
        assert info["count"] == len(acknowledged)
        for item_id in acknowledged[::37] + [acknowledged[-1]]:
            assert client.get(f"{server.url}/collections/d/items/{item_id}").status_code == 200
        hits = client.post(
            f"{server.url}/collections/d/search",
            json={"vector": [200, 2, 3, 4, 5, 6, 7, 3], "k": 1, "exact": True},
        ).json()["hits"]
        assert hits[0]["id"] == "r2-199"
