"""The open-loop generator against real HTTP servers: latency from the intended send time,
status counting, overload accounting, sampling, and ``bench load`` end to end."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from spyglass.bench.http import Target
from spyglass.bench.load import Generator, StepResult
from spyglass.bench.scenario import (
    CollectionInfo,
    Prepared,
    Scenario,
    collection_info,
    sample_requests,
)
from spyglass.errors import ConfigError
from tests.e2e.server import running

REQUEST = Prepared("vector", "POST", "/search", b'{"vector": [1, 0], "k": 3}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


@contextmanager
def http_server(answer: Callable[[int], int | None], delay: float = 0.0) -> Iterator[str]:
    """A real HTTP/1.1 keep-alive server on a free port that handles one request at a time.

    ``answer(n)`` gives the status of the n-th request (from 1), or None to close the
    connection without answering; each request holds the server for ``delay`` seconds.
    """
    lock = threading.Lock()
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                count[0] += 1
                status = answer(count[0])
                time.sleep(delay)
            if status is None:
                self.close_connection = True
                return
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def run_step(url: str, rate: float, seconds: float, max_outstanding: int = 4000) -> StepResult:
    """One constant-rate step of the generator against ``url``."""

    async def step() -> StepResult:
        target = Target.from_url(url)
        generator = Generator(
            target, lambda: REQUEST, arrival="constant", max_outstanding=max_outstanding
        )
        try:
            return await generator.step(rate, seconds)
        finally:
            await generator.aclose()

    return asyncio.run(step())


def test_an_overloaded_server_shows_its_queueing_in_the_latency() -> None:
    # 50 ms per request, one at a time: at most 20/s. Offered 40/s for 2 s, the 80
    # requests cannot all be answered before 4 s, so the last ones waited ~2 s
    # counted from when they were meant to leave (no coordinated omission).
    with http_server(lambda n: 200, delay=0.05) as url:
        step = run_step(url, 40, 2.0)
    assert step.sent == 80 and step.status["2xx"] == 80
    assert step.p50_ms is not None and step.p50_ms >= 50
    assert (
        step.p99_ms is not None and step.p99_ms >= 1900
    )  # 2nd last done >= 3.95 s, sent <= 1.975 s
    assert step.achieved_rate <= 20.5
    assert step.p50_ms > 2 * 50  # it grows: queueing, not just the 50 ms of service


def test_below_capacity_the_rate_is_held_and_latency_is_the_service_time() -> None:
    with http_server(lambda n: 200, delay=0.05) as url:
        step = run_step(url, 10, 2.0)
    assert step.sent == 20 and step.status["2xx"] == 20
    assert step.p50_ms is not None and step.p50_ms >= 50
    assert step.achieved_rate >= 0.8 * 10
    assert not step.generator_behind and step.dropped == 0


def _status_of(n: int) -> int | None:
    if n % 11 == 0:
        return None  # connection closed without an answer: a transport error
    if n % 5 == 0:
        return 503
    if n % 3 == 0:
        return 429
    if n % 7 == 0:
        return 404
    return 200


def test_statuses_and_transport_errors_are_counted() -> None:
    with http_server(_status_of) as url:
        step = run_step(url, 40, 1.0)
    expected = [_status_of(n) for n in range(1, 41)]
    assert step.sent == 40
    assert step.status == {
        "2xx": expected.count(200),
        "429": expected.count(429),
        "503": expected.count(503),
        "other": expected.count(404),
        "errors": expected.count(None),
    }
    assert step.answered == 40 - expected.count(None)
    assert step.achieved_rate <= 40


def test_requests_over_the_safety_valve_are_dropped_and_flagged() -> None:
    with http_server(lambda n: 200, delay=0.05) as url:
        step = run_step(url, 40, 1.0, max_outstanding=3)
    assert step.dropped > 0 and step.sent + step.dropped == 40
    assert step.generator_behind
    assert step.status["2xx"] == step.sent


def test_target_keeps_credentials_out_of_the_report_url() -> None:
    target = Target.from_url("https://user:secret@example.com:8443/base/", "k3y")
    assert target.public_url == "https://example.com:8443/base"
    assert b"Authorization: Bearer k3y" in target.headers
    assert target.wire(REQUEST).startswith(b"POST /base/search HTTP/1.1\r\n")
    with pytest.raises(ConfigError):
        Target.from_url("ftp://example.com")


async def test_sampling_makes_each_request_type_from_real_items(client: httpx.AsyncClient) -> None:
    assert (await client.put("/collections/docs", json={"dim": 4})).status_code == 201
    rng = random.Random(1)
    items = [
        {
            "id": f"d{i}",
            "vector": [rng.gauss(0, 1) for _ in range(4)],
            "text": f"Bees number {i} make honey in summer. They rest in winter.",
        }
        for i in range(40)
    ]
    assert (await client.post("/collections/docs/items", json={"items": items})).status_code == 200
    info = await collection_info(client, "docs")
    assert info == CollectionInfo("docs", "none", 4, 40)
    scenario = Scenario(mix={"vector": 1, "text": 1, "ask": 1}, pool=20, text_mode="keyword")
    mix = await sample_requests(client, info, scenario)
    assert set(mix.pools) == {"vector", "text", "ask"}
    texts = {item["text"] for item in items}
    for kind, pool in mix.pools.items():
        assert len(pool) == 20
        for request in pool:
            body = json.loads(request.body)
            if kind == "vector":
                assert request.path == "/collections/docs/search" and len(body["vector"]) == 4
            elif kind == "text":
                assert body["mode"] == "keyword" and any(body["text"] in t for t in texts)
            else:
                assert request.path == "/collections/docs/ask"
                assert body["question"].startswith("Bees number ")
                assert body["question"].endswith("summer.")
    for kind in ("color", "image"):
        with pytest.raises(ConfigError, match=f"cannot make {kind} requests"):
            await sample_requests(client, info, Scenario(mix={kind: 1}, pool=5))
    default = await sample_requests(client, info, Scenario(pool=5))
    assert set(default.pools) == {"vector"}  # no encoder: vectors only


def tiny_collection(url: str, name: str = "tiny", n: int = 200) -> None:
    """A vector collection of ``n`` random 8-d items with short texts, made over HTTP."""
    rng = random.Random(0)
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.put(f"/collections/{name}", json={"dim": 8}).status_code == 201
        items = [
            {"id": f"i{i}", "vector": [rng.gauss(0, 1) for _ in range(8)], "text": f"item {i}."}
            for i in range(n)
        ]
        assert http.post(f"/collections/{name}/items", json={"items": items}).status_code == 200


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    """The real ``spyglass bench`` command in a fresh process."""
    argv = [sys.executable, "-m", "spyglass", "bench", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


@pytest.mark.e2e
def test_bench_load_writes_json_and_html_reports(tmp_path: Path) -> None:
    with running(tmp_path / "data", log=tmp_path / "server.log") as server:
        tiny_collection(server.url)
        out = tmp_path / "report"
        ran = bench(
            "load",
            "--url",
            server.url,
            "--collection",
            "tiny",
            "--rates",
            "20,40",
            "--step-s",
            "1",
            "--out",
            str(out),
        )
    assert ran.returncode == 0, ran.stderr
    assert "wrote" in ran.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["kind"] == "load" and report["format"] == 1 and not report["partial"]
    assert report["collection"] == {"name": "tiny", "encoder": "none", "dim": 8, "count": 200}
    assert report["server"]["url"] == server.url and report["server"]["version"]
    assert report["server"]["settings"]["workers"] == 1  # an open server: /status is readable
    assert {"cpu", "cores", "python", "platform"} <= set(report["machine"])
    assert [s["offered_rate"] for s in report["steps"]] == [20, 40]
    for step in report["steps"]:
        assert step["status"]["2xx"] == step["sent"] > 0
        assert step["server"]["requests"] == step["sent"]  # the server counted the same
        assert step["p50_ms"] <= step["p99_ms"] <= step["p999_ms"]
    page = (tmp_path / "report.html").read_text()
    tags = _Tags()
    tags.feed(page)
    assert tags.tags.count("svg") == 2 and "polyline" in tags.tags
    assert "http://" not in page.replace(server.url, "").replace("http://www.w3.org/2000/svg", "")


@pytest.mark.e2e
def test_bench_load_can_drive_wrk_closed_loop(tmp_path: Path) -> None:
    with running(tmp_path / "data", log=tmp_path / "server.log") as server:
        tiny_collection(server.url)
        ran = bench(
            "load",
            "--url",
            server.url,
            "--collection",
            "tiny",
            "--engine",
            "wrk",
            "--connections",
            "4",
            "--step-s",
            "1",
            "--out",
            str(tmp_path / "wrk"),
        )
    assert ran.returncode == 0, ran.stderr
    (step,) = json.loads((tmp_path / "wrk.json").read_text())["steps"]
    assert step["engine"] == "wrk" and step["offered_rate"] is None and step["connections"] == 4
    assert step["status"]["2xx"] > 0 and step["status"]["other"] == 0
    assert step["server"]["requests"] >= step["status"]["2xx"]
