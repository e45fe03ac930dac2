"""A real multi-worker server: a write through any worker is seen by every worker."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.server import running

pytestmark = pytest.mark.e2e


def fresh_client() -> httpx.Client:
    """A client that opens a new connection per request, so the kernel spreads them over workers."""
    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=30)


def test_writes_are_visible_to_every_worker_at_once(tmp_path: Path) -> None:
    with running(tmp_path / "data", workers=2, log=tmp_path / "server.log") as server:
        with fresh_client() as client:
            url = server.url
            r = client.put(f"{url}/collections/shared", json={"dim": 4, "metric": "l2"})
            assert r.status_code == 201
            pids: set[int] = set()
            for i in range(30):
                vector = [float(i), 0.0, 0.0, 1.0]
                r = client.post(
                    f"{url}/collections/shared/items",
                    json={"items": [{"id": f"item{i}", "vector": vector, "payload": {"i": i}}]},
                )
                assert r.status_code == 200
                for _ in range(8):
                    hits = client.post(
                        f"{url}/collections/shared/search", json={"vector": vector, "k": 1}
                    ).json()["hits"]
                    assert hits and hits[0]["id"] == f"item{i}", (i, hits)
                    pids.add(client.get(f"{url}/livez").json()["checks"]["pid"])
                count = client.get(f"{url}/collections/shared").json()["count"]
                assert count == i + 1
            deleted = client.post(f"{url}/collections/shared/delete", json={"ids": ["item29"]})
            assert deleted.json()["deleted"] == 1
            for _ in range(16):
                hits = client.post(
                    f"{url}/collections/shared/search", json={"vector": [29, 0, 0, 1], "k": 1}
                ).json()["hits"]
                assert hits[0]["id"] == "item28"
            # spyglass serve gives its workers one metrics directory: /metrics sums them all
            metrics = client.get(f"{url}/metrics").text
        assert len(pids) == 2, "requests should have reached both workers"
        searches = [
            line
            for line in metrics.splitlines()
            if line.startswith("spyglass_http_requests_total{")
            and 'route="/collections/{name}/search"' in line
            and 'status="200"' in line
        ]
        assert len(searches) == 1 and float(searches[0].rsplit(" ", 1)[1]) == 30 * 8 + 16
        assert "shared" not in " ".join(searches)
