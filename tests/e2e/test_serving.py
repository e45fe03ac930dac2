"""A real two-worker server: the Redis cache is shared and exact, and SIGTERM drains."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.server import running, start
from tests.e2e.test_workers import fresh_client

pytestmark = pytest.mark.e2e


def counter(metrics: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == name
    )


def test_two_workers_share_one_exact_cache_in_redis(tmp_path: Path, redis_url: str) -> None:
    database = redis_url.rsplit("/", 1)[0] + "/5"  # its own database: no other test's keys
    env = {"SPYGLASS_REDIS_URL": database}
    with running(tmp_path / "data", workers=2, log=tmp_path / "server.log", env=env) as server:
        url = server.url
        with fresh_client() as client:
            assert client.put(f"{url}/collections/c", json={"dim": 2}).status_code == 201
            items = {"items": [{"id": "far", "vector": [0.0, 1.0]}]}
            assert client.post(f"{url}/collections/c/items", json=items).status_code == 200
        query = {"vector": [1.0, 0.1], "k": 1}
        pids = set()
        searches = 0
        # Which worker accepts a new connection is the kernel's choice (a quiet machine
        # may give one worker many in a row): connect until both have answered a search.
        for _ in range(2000):  # bounded; not a timing assertion
            with httpx.Client(timeout=30) as connection:  # one connection, so one worker
                pid = connection.get(f"{url}/livez").json()["checks"]["pid"]
                found = connection.post(f"{url}/collections/c/search", json=query)
            assert [h["id"] for h in found.json()["hits"]] == ["far"]
            searches += 1
            pids.add(pid)
            if len(pids) == 2 and searches >= 10:
                break
        assert len(pids) == 2, "searches should have reached both workers"
        with fresh_client() as client:
            metrics = client.get(f"{url}/metrics").text
            # one miss in all: whichever worker answered later found the first one's entry
            assert counter(metrics, "spyglass_cache_misses_total") == 1
            assert counter(metrics, "spyglass_cache_hits_total") == searches - 1

            near = {"items": [{"id": "near", "vector": [1.0, 0.0]}]}
            assert client.post(f"{url}/collections/c/items", json=near).status_code == 200
            for _ in range(20):  # through either worker, never the stale cached answer
                hits = client.post(f"{url}/collections/c/search", json=query).json()["hits"]
                assert [h["id"] for h in hits] == ["near"]


def test_sigterm_lets_requests_in_flight_finish(tmp_path: Path) -> None:
    server = start(tmp_path / "data", workers=2, log=tmp_path / "server.log")
    url = server.url
    try:
        assert httpx.put(f"{url}/collections/t", json={"encoder": "text"}).status_code == 201
        texts = [{"id": str(i), "text": f"sentence number {i} " * 12} for i in range(1000)]
        answer: dict[str, httpx.Response] = {}

        def upsert() -> None:
            answer["r"] = httpx.post(
                f"{url}/collections/t/items", json={"items": texts}, timeout=300
            )

        writer = threading.Thread(target=upsert)
        writer.start()
        with fresh_client() as client:  # until the upsert is being worked on
            for _ in range(10_000):
                metrics = client.get(f"{url}/metrics").text
                if counter(metrics, "spyglass_http_requests_in_flight") >= 2:  # it + /metrics
                    break
            else:
                pytest.fail("the upsert never showed as in flight")
        os.killpg(server.process.pid, signal.SIGTERM)
        writer.join(timeout=300)
        assert server.process.wait(timeout=300) == 0
        assert answer["r"].status_code == 200, answer["r"].text
        assert answer["r"].json()["upserted"] == 1000
    finally:
        if server.process.poll() is None:
            server.kill()
    # what was acknowledged is there after a restart
    with running(tmp_path / "data", log=tmp_path / "again.log") as again:
        assert httpx.get(f"{again.url}/collections/t").json()["count"] == 1000
