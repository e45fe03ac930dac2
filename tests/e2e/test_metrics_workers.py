"""/metrics of a real 2-worker uvicorn server sums what every worker counted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.conftest import REPO
from tests.e2e.server import free_port

pytestmark = pytest.mark.e2e

N = 40


def fresh_client() -> httpx.Client:
    """A new connection per request, so the kernel spreads them over the workers."""
    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``python -m uvicorn --factory --workers 2`` on tests/e2e/metrics_app.py."""
    prom = tmp_path / "prom"
    prom.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
        "SPYGLASS_DATA_DIR": str(tmp_path / "data"),
    }
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.e2e.metrics_app:app_factory",
        "--factory",
        "--workers",
        "2",
        "--port",
        str(port),
        "--no-access-log",
    ]
    log = tmp_path / "server.log"
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield url, prom
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def spread(client: httpx.Client, url: str) -> tuple[int, set[str]]:
    """GET /livez at least N times and until both workers answered; how many, and who."""
    pids: set[str] = set()
    sent = 0
    while sent < N or len(pids) < 2:
        assert sent < 5000, "requests should reach both workers"
        pids.add(client.get(f"{url}/livez").json()["checks"]["pid"])
        sent += 1
    return sent, pids


def scrape(client: httpx.Client, url: str) -> list[Sample]:
    r = client.get(url + "/metrics")
    assert r.status_code == 200
    return [s for f in text_string_to_metric_families(r.text) for s in f.samples]


def values(samples: list[Sample], name: str, **labels: str) -> list[float]:
    return [s.value for s in samples if s.name == name and s.labels == labels]


def test_totals_are_summed_over_both_workers(server: tuple[str, Path]) -> None:
    url, prom = server
    with fresh_client() as client:
        assert client.put(f"{url}/collections/shared", json={"dim": 2}).status_code == 201
        items = [{"id": f"i{n}", "vector": [1.0, float(n)]} for n in range(3)]
        r = client.post(f"{url}/collections/shared/items", json={"items": items})
        assert r.status_code == 200
        sent, pids = spread(client, url)
        assert len(pids) == 2

        # A worker that is just starting has created its file but written nothing yet.
        (prom / "counter_1.db").touch()
        # Whichever worker answers the scrape, it reports the server's totals.
        for _ in range(6):
            samples = scrape(client, url)
            total = values(
                samples, "spyglass_http_requests_total", route="/livez", method="GET", status="200"
            )
            assert total == [sent]
            count = values(
                samples,
                "spyglass_http_request_duration_seconds_count",
                route="/livez",
                method="GET",
            )
            assert count == [sent]
            # Read from the shared store once, by the worker that answers: not doubled.
            assert values(samples, "spyglass_collection_items", collection="shared") == [3]
            # Only the scrape itself is in flight, summed over the live workers.
            assert values(samples, "spyglass_http_requests_in_flight") == [1]
    # Both workers wrote their own files in the directory handed down.
    assert len([f for f in prom.glob("counter_*.db") if f.stat().st_size]) == 2


def test_a_killed_worker_keeps_its_counts_and_drops_its_live_gauge(
    server: tuple[str, Path],
) -> None:
    url, prom = server
    with fresh_client() as client:
        served, pids = spread(client, url)
        assert len(pids) == 2
        victim = int(sorted(pids)[0])
        assert (prom / f"gauge_livesum_{victim}.db").exists()
        os.kill(victim, signal.SIGKILL)
        # uvicorn's supervisor reaps the dead worker and starts another.
        answered: set[str] = set()
        deadline = time.monotonic() + 60
        while len(answered - pids) != 1:
            assert time.monotonic() < deadline, "no replacement worker"
            try:
                r = client.get(f"{url}/livez")
            except httpx.TransportError:
                continue
            served += 1
            answered.add(r.json()["checks"]["pid"])
        samples = scrape(client, url)
        total = values(
            samples, "spyglass_http_requests_total", route="/livez", method="GET", status="200"
        )
        # Every answered /livez, the dead worker's included.
        assert total == [served]
        assert values(samples, "spyglass_http_requests_in_flight") == [1]
    assert not (prom / f"gauge_livesum_{victim}.db").exists()
    assert (prom / f"counter_{victim}.db").exists()
