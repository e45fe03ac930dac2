"""The metrics middleware and /metrics on a real app (create_app, real SQLite store)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spyglass.app import create_app
from spyglass.errors import ConfigError
from spyglass.metrics import MULTIPROC_ENV, Metrics, multiproc_dir
from spyglass.middleware.metrics import HttpCounts, MetricsMiddleware
from spyglass.middleware.route_template import UNMATCHED
from spyglass.routes.metrics import router as metrics_router
from tests.conftest import test_settings as settings_for

SEARCH = "/collections/{name}/search"


class Refuse:
    """Stands in for the rate limiter and admission control: refuses before routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refuse = {"/collections/full/search": 503, "/collections/greedy": 429}
        status = refuse.get(scope.get("path", "")) if scope["type"] == "http" else None
        if status is None:
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def build(tmp_path: Path, metrics: Metrics) -> FastAPI:
    app = create_app(settings_for(tmp_path / "data"))
    app.state.metrics = metrics
    app.add_middleware(Refuse)
    app.add_middleware(MetricsMiddleware, counts=HttpCounts(metrics))
    app.include_router(metrics_router)
    return app


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = build(tmp_path, Metrics())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as c:
            yield c


async def scrape(client: httpx.AsyncClient) -> tuple[str, list[Sample]]:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    samples = [s for f in text_string_to_metric_families(r.text) for s in f.samples]
    return r.text, samples


def label_values(samples: list[Sample]) -> set[str]:
    return {v for s in samples for v in s.labels.values()}


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) <= 1
    return found[0] if found else None


async def test_counts_by_route_template_and_status(client: httpx.AsyncClient) -> None:
    r = await client.put("/collections/docs", json={"dim": 2, "metric": "l2"})
    assert r.status_code == 201
    items = [{"id": f"i{n}", "vector": [float(n), 1.0]} for n in range(3)]
    assert (await client.post("/collections/docs/items", json={"items": items})).status_code == 200
    for _ in range(3):
        r = await client.post("/collections/docs/search", json={"vector": [1.0, 1.0], "k": 1})
        assert r.status_code == 200
    r = await client.post("/collections/hiddenname/search", json={"vector": [1.0, 1.0]})
    assert r.status_code == 404
    r = await client.post("/collections/docs/search", json={"vector": [1.0, 1.0, 1.0]})
    assert r.status_code == 422
    assert (await client.get("/no/such/thing")).status_code == 404

    text, samples = await scrape(client)
    total = "spyglass_http_requests_total"
    assert value(samples, total, route=SEARCH, method="POST", status="200") == 3
    assert value(samples, total, route=SEARCH, method="POST", status="404") == 1
    assert value(samples, total, route=SEARCH, method="POST", status="422") == 1
    assert value(samples, total, route="/collections/{name}", method="PUT", status="201") == 1
    assert value(samples, total, route="unmatched", method="GET", status="404") == 1
    # Raw paths and client-chosen names never become label values.
    assert "hiddenname" not in text
    assert "/collections/docs" not in text
    assert "/no/such" not in text
    routes = {s.labels["route"] for s in samples if "route" in s.labels}
    assert routes == {SEARCH, "/collections/{name}", "/collections/{name}/items", "unmatched"}

    duration = "spyglass_http_request_duration_seconds"
    buckets = [s for s in samples if s.name == f"{duration}_bucket" and s.labels["route"] == SEARCH]
    assert {s.labels["le"] for s in buckets} >= {"0.005", "0.1", "1.0", "+Inf"}
    assert value(samples, f"{duration}_count", route=SEARCH, method="POST") == 5
    inf = [s.value for s in buckets if s.labels["le"] == "+Inf"]
    assert inf == [5]
    # The scrape itself is the one request in flight.
    assert value(samples, "spyglass_http_requests_in_flight") == 1
    assert value(samples, "spyglass_collection_items", collection="docs") == 3
    assert value(samples, "spyglass_index_items", collection="docs", state="tail") == 3
    assert value(samples, "spyglass_index_items", collection="docs", state="indexed") == 0
    assert value(samples, "spyglass_index_building", collection="docs") == 0
    assert value(samples, "spyglass_index_ef_search", collection="docs") == 48
    assert value(samples, "spyglass_index_recall_estimate", collection="docs") is None  # no build


async def test_refusals_count_as_shed_and_rate_limited(client: httpx.AsyncClient) -> None:
    assert (await client.post("/collections/full/search", json={})).status_code == 503
    assert (await client.post("/collections/full/search", json={})).status_code == 503
    assert (await client.put("/collections/greedy", json={})).status_code == 429

    text, samples = await scrape(client)
    assert value(samples, "spyglass_http_shed_total", route_class="search") == 2
    assert value(samples, "spyglass_http_rate_limited_total", route_class="ingest") == 1
    # Refused before routing, yet labelled by the template the request would have taken.
    total = "spyglass_http_requests_total"
    assert value(samples, total, route=SEARCH, method="POST", status="503") == 2
    assert value(samples, total, route="/collections/{name}", method="PUT", status="429") == 1
    assert not any("greedy" in v or "full" in v for v in label_values(samples))
    assert "/collections/greedy" not in text


async def test_an_answer_is_counted_before_its_last_byte_leaves() -> None:
    """A worker killed just after answering has already counted what the client holds."""
    metrics = Metrics()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})

    seen: list[tuple[bool, float | None, float | None]] = []

    async def send(message: Message) -> None:
        samples = [
            s
            for f in text_string_to_metric_families(metrics.exposition().decode())
            for s in f.samples
        ]
        counted = value(
            samples, "spyglass_http_requests_total", route=UNMATCHED, method="GET", status="200"
        )
        flying = value(samples, "spyglass_http_requests_in_flight")
        seen.append((bool(message.get("more_body")), counted, flying))

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "GET", "path": "/x", "root_path": "", "headers": []}
    await MetricsMiddleware(app, HttpCounts(metrics))(scope, receive, send)
    start, part, end = seen
    assert start[1:] == (None, 1) and part[1:] == (None, 1)
    assert end == (False, 1, 0)


async def test_cache_and_encoder_metrics(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.cache(hit=True)
    metrics.cache(hit=True)
    metrics.cache(hit=False)
    metrics.encoder_batch("text", 24, 0.03)
    samples = [
        s for f in text_string_to_metric_families(metrics.exposition().decode()) for s in f.samples
    ]
    assert value(samples, "spyglass_cache_hits_total") == 2
    assert value(samples, "spyglass_cache_misses_total") == 1
    size = "spyglass_encoder_batch_size"
    assert value(samples, f"{size}_sum", encoder="text") == 24
    assert value(samples, f"{size}_bucket", encoder="text", le="16.0") == 0
    assert value(samples, f"{size}_bucket", encoder="text", le="32.0") == 1
    seconds = "spyglass_encoder_batch_duration_seconds"
    assert value(samples, f"{seconds}_count", encoder="text") == 1


def test_two_apps_in_one_process_count_apart() -> None:
    first, second = Metrics(), Metrics()
    first.cache(hit=True)
    assert b"spyglass_cache_hits_total 1.0" in first.exposition()
    assert b"spyglass_cache_hits_total 0.0" in second.exposition()


def test_multiprocess_dir_must_match_how_the_library_was_imported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR"):
        Metrics(multiprocess_dir=tmp_path)


def test_multiproc_dir_sets_a_fresh_directory_and_restores(tmp_path: Path) -> None:
    with multiproc_dir(workers=1) as none:
        assert none is None
        assert MULTIPROC_ENV not in os.environ
    chosen = tmp_path / "prom"
    chosen.mkdir()
    (chosen / "counter_12345.db").write_bytes(b"stale")
    with multiproc_dir(workers=2, path=chosen) as directory:
        assert directory == chosen
        assert os.environ[MULTIPROC_ENV] == str(chosen)
        assert list(chosen.iterdir()) == []
    assert MULTIPROC_ENV not in os.environ
    assert chosen.is_dir()  # the operator's directory stays
    with multiproc_dir(workers=2) as temporary:
        assert temporary is not None and temporary.is_dir()
    assert not temporary.exists()


async def test_the_app_counts_every_real_model_call(tmp_path: Path) -> None:
    """Texts upserted and searched go through the real text model; the metric counts them."""
    app = create_app(settings_for(tmp_path / "data", cache_max_bytes=0))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spyglass") as c:
            assert (await c.put("/collections/t", json={"encoder": "text"})).status_code == 201
            items = [{"id": str(i), "text": f"note number {i}"} for i in range(5)]
            r = await c.post("/collections/t/items", json={"items": items})
            assert r.status_code == 200
            for query in ("first", "second", "third"):
                r = await c.post("/collections/t/search", json={"text": query, "k": 2})
                assert r.status_code == 200
            text = (await c.get("/metrics")).text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    size = "spyglass_encoder_batch_size"
    assert value(samples, f"{size}_sum", encoder="text") == 5 + 3  # every text, once
    calls = value(samples, f"{size}_count", encoder="text")
    assert 2 <= calls <= 4  # the upsert's one call, and the searches (alone or batched)
    seconds = "spyglass_encoder_batch_duration_seconds"
    assert value(samples, f"{seconds}_count", encoder="text") == calls
    assert value(samples, f"{seconds}_sum", encoder="text") > 0
