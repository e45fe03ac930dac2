"""Rate limits: per caller and route class, in memory and shared through a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import httpx
import pytest
import redis
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spyglass import problems
from spyglass.middleware.rate_limit import (
    RateLimiter,
    client_ip,
    install_rate_limit,
    parse_networks,
)
from tests.e2e.server import free_port

# Hour-long windows: no test depends on how fast it runs.
ONE_AN_HOUR = {"search": "1/hour", "ingest": "1/hour", "other": "1/hour", "admin": "1/hour"}


class FakeAuth:
    """Stands in for the auth layer: ``X-Test-Key`` becomes ``state.principal.key_id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            key = dict(scope["headers"]).get(b"x-test-key")
            if key:
                scope.setdefault("state", {})["principal"] = SimpleNamespace(key_id=key.decode())
        await self.app(scope, receive, send)


async def ok() -> dict[str, str]:
    return {"ok": "yes"}


MakeApp = Callable[..., tuple[FastAPI, RateLimiter]]


@pytest.fixture
async def tiny_app() -> AsyncIterator[MakeApp]:
    """Builds apps with one endpoint per route class; closes their limiters afterwards."""
    made: list[RateLimiter] = []

    def make(limits: dict[str, str], **options: object) -> tuple[FastAPI, RateLimiter]:
        app, limiter = build_app(limits, **options)
        made.append(limiter)
        return app, limiter

    yield make
    for limiter in made:
        await limiter.close()


def build_app(limits: dict[str, str], **options: object) -> tuple[FastAPI, RateLimiter]:
    """One endpoint per route class, rate limit installed (auth stand-in outside it)."""
    app = FastAPI()
    problems.install(app)
    app.add_api_route("/collections/c/search", ok, methods=["POST"])
    app.add_api_route("/collections/c/items", ok, methods=["POST"])
    app.add_api_route("/collections/c", ok, methods=["GET"])
    app.add_api_route("/livez", ok, methods=["GET"])
    limiter = install_rate_limit(app, limits_by_class=limits, **options)
    app.add_middleware(FakeAuth)
    return app, limiter


def client_for(app: FastAPI, ip: str = "192.0.2.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    body: dict[str, object] = response.json()
    assert body["type"] == f"urn:spyglass:problem:{slug}"
    assert body["status"] == status
    assert body["instance"] == response.request.url.path
    return body


# --- in memory -------------------------------------------------------------------------


async def test_request_over_the_limit_gets_429_with_headers(tiny_app: MakeApp) -> None:
    app, _ = tiny_app({"search": "3/hour"})
    async with client_for(app) as client:
        answers = [await client.post("/collections/c/search") for _ in range(4)]
    assert [r.status_code for r in answers[:3]] == [200, 200, 200]
    policy = '"search-3600s";q=3;w=3600'
    assert [r.headers["ratelimit-policy"] for r in answers] == [policy] * 4
    remaining = [r.headers["ratelimit"].split(";")[1] for r in answers]
    assert remaining == ["r=2", "r=1", "r=0", "r=0"]
    body = assert_problem(answers[3], 429, "rate-limited")
    assert body["violated-policies"] == ["search-3600s"]
    assert 1 <= int(answers[3].headers["retry-after"]) <= 3600
    t = int(answers[3].headers["ratelimit"].rsplit("t=", 1)[1])
    assert int(answers[3].headers["retry-after"]) >= t  # never earlier than the window end


async def test_burst_and_sustained_limits_are_both_enforced(tiny_app: MakeApp) -> None:
    app, _ = tiny_app({"search": "2/hour;3/day"})
    async with client_for(app) as client:
        answers = [await client.post("/collections/c/search") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    policy = '"search-3600s";q=2;w=3600, "search-86400s";q=3;w=86400'
    assert answers[0].headers["ratelimit-policy"] == policy
    assert answers[1].headers["ratelimit"].startswith('"search-3600s";r=0;t=')
    assert '"search-86400s";r=1;' in answers[1].headers["ratelimit"]
    assert answers[2].json()["violated-policies"] == ["search-3600s"]


async def test_other_clients_and_route_classes_have_their_own_budgets(tiny_app: MakeApp) -> None:
    app, _ = tiny_app(ONE_AN_HOUR)
    async with client_for(app, "192.0.2.1") as first, client_for(app, "192.0.2.2") as second:
        assert (await first.post("/collections/c/search")).status_code == 200
        assert (await first.post("/collections/c/search")).status_code == 429
        assert (await second.post("/collections/c/search")).status_code == 200
        assert (await first.post("/collections/c/items")).status_code == 200
        assert (await first.get("/collections/c")).status_code == 200
        assert (await first.post("/collections/c/items")).status_code == 429


async def test_api_keys_are_limited_separately_from_their_ip(tiny_app: MakeApp) -> None:
    app, _ = tiny_app(ONE_AN_HOUR)
    async with client_for(app) as client:
        assert (await client.get("/collections/c", headers={"x-test-key": "a"})).status_code == 200
        assert (await client.get("/collections/c", headers={"x-test-key": "a"})).status_code == 429
        assert (await client.get("/collections/c", headers={"x-test-key": "b"})).status_code == 200
        assert (await client.get("/collections/c")).status_code == 200


async def test_health_is_never_limited_and_empty_budgets_mean_unlimited(tiny_app: MakeApp) -> None:
    app, _ = tiny_app({"health": "1/hour", "search": "", "other": "1/hour"})
    async with client_for(app) as client:
        for _ in range(3):
            livez = await client.get("/livez")
            search = await client.post("/collections/c/search")
            assert (livez.status_code, search.status_code) == (200, 200)
            assert "ratelimit" not in livez.headers and "ratelimit" not in search.headers


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(tiny_app: MakeApp) -> None:
    app, _ = tiny_app(ONE_AN_HOUR, trusted_proxies=["10.0.0.0/8"])
    async with client_for(app, "192.0.2.1") as client:
        first = await client.get("/collections/c", headers={"x-forwarded-for": "198.51.100.1"})
        second = await client.get("/collections/c", headers={"x-forwarded-for": "198.51.100.2"})
    assert (first.status_code, second.status_code) == (200, 429)


async def test_forwarded_for_is_honoured_from_a_trusted_proxy(tiny_app: MakeApp) -> None:
    app, _ = tiny_app(ONE_AN_HOUR, trusted_proxies=["10.0.0.0/8"])
    async with client_for(app, "10.1.2.3") as proxy:
        # The client forged the left-most hop; the proxies appended the rest.
        a = {"x-forwarded-for": "203.0.113.9, 198.51.100.1, 10.0.0.7"}
        b = {"x-forwarded-for": "203.0.113.9, 198.51.100.2, 10.0.0.7"}
        assert (await proxy.get("/collections/c", headers=a)).status_code == 200
        assert (await proxy.get("/collections/c", headers=a)).status_code == 429
        assert (await proxy.get("/collections/c", headers=b)).status_code == 200


def test_client_ip_picks_the_right_most_untrusted_hop() -> None:
    trusted = parse_networks(["10.0.0.0/8", "2001:db8::/32"])

    def scope(peer: str, *xff: str) -> Scope:
        headers = [(b"x-forwarded-for", value.encode()) for value in xff]
        return {"type": "http", "client": (peer, 1), "headers": headers}

    assert client_ip(scope("192.0.2.1", "198.51.100.1"), trusted) == "192.0.2.1"
    assert client_ip(scope("10.0.0.1"), trusted) == "10.0.0.1"
    assert client_ip(scope("10.0.0.1", "1.1.1.1, 2.2.2.2", "10.9.9.9"), trusted) == "2.2.2.2"
    assert client_ip(scope("10.0.0.1", "10.0.0.2, 10.0.0.3"), trusted) == "10.0.0.2"
    assert client_ip(scope("10.0.0.1", "1.1.1.1, not-an-ip"), trusted) == "10.0.0.1"
    assert client_ip(scope("2001:db8::1", "2001:0db8:0::5, 2a00::1"), trusted) == "2a00::1"


# --- Redis -----------------------------------------------------------------------------


@pytest.fixture
async def fresh_redis(redis_url: str) -> AsyncIterator[str]:
    redis.Redis.from_url(redis_url).flushdb()
    yield redis_url


@pytest.mark.redis
async def test_two_workers_share_the_limit_through_redis(
    tiny_app: MakeApp, fresh_redis: str
) -> None:
    worker_a, limiter_a = tiny_app({"search": "3/hour"}, storage_uri=fresh_redis)
    worker_b, limiter_b = tiny_app({"search": "3/hour"}, storage_uri=fresh_redis)
    async with client_for(worker_a) as a, client_for(worker_b) as b:
        assert (await a.post("/collections/c/search")).status_code == 200
        assert (await a.post("/collections/c/search")).status_code == 200
        third = await b.post("/collections/c/search")
        assert third.status_code == 200
        assert third.headers["ratelimit"].startswith('"search-3600s";r=0;')
        assert_problem(await b.post("/collections/c/search"), 429, "rate-limited")
        assert_problem(await a.post("/collections/c/search"), 429, "rate-limited")
    assert await limiter_a.check() == "ok"
    assert await limiter_b.check() == "ok"
    assert redis.Redis.from_url(fresh_redis).keys("spyglass-ratelimit*")


@pytest.mark.redis
async def test_memory_storage_is_per_worker(tiny_app: MakeApp, fresh_redis: str) -> None:
    worker_a, limiter = tiny_app({"search": "1/hour"})
    worker_b, _ = tiny_app({"search": "1/hour"})
    async with client_for(worker_a) as a, client_for(worker_b) as b:
        assert (await a.post("/collections/c/search")).status_code == 200
        assert (await b.post("/collections/c/search")).status_code == 200
    assert await limiter.check() == "ok"
    assert not redis.Redis.from_url(fresh_redis).keys("*")


# --- Redis unreachable -----------------------------------------------------------------


async def test_unreachable_redis_fails_open_with_a_metric_and_check_says_so(
    tiny_app: MakeApp,
) -> None:
    events: list[str] = []
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app, limiter = tiny_app(
        {"search": "1/hour"}, storage_uri=url, fail_open=True, metrics_hook=events.append
    )
    async with client_for(app) as client:
        answers = [await client.post("/collections/c/search") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert events == ["fail_open"] * 3
    state = await limiter.check()
    assert state.startswith("unreachable: ") and "ConnectionError" in state


async def test_unreachable_redis_fails_closed_with_503(tiny_app: MakeApp) -> None:
    events: list[str] = []
    url = f"redis://127.0.0.1:{free_port()}/0"
    app, limiter = tiny_app(
        {"search": "1/hour"}, storage_uri=url, fail_open=False, metrics_hook=events.append
    )
    async with client_for(app) as client:
        refused = await client.post("/collections/c/search")
        health = await client.get("/livez")
    body = assert_problem(refused, 503, "unavailable")
    assert "rate limits" in str(body["detail"])
    assert health.status_code == 200
    assert events == ["fail_closed"]
    assert (await limiter.check()).startswith("unreachable: ")


@pytest.mark.redis
async def test_lifespan_shutdown_closes_the_redis_connections(fresh_redis: str) -> None:
    app, _ = build_app({"search": "5/hour"}, storage_uri=fresh_redis)
    watcher = redis.Redis.from_url(fresh_redis)
    before = len(watcher.client_list())
    async with client_for(app) as client:
        assert (await client.post("/collections/c/search")).status_code == 200
    assert len(watcher.client_list()) == before + 1
    messages: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert [m["type"] for m in sent][-1] == "lifespan.shutdown.complete"
    assert len(watcher.client_list()) == before
    watcher.close()


async def test_the_server_limits_by_its_settings(tmp_path: object) -> None:
    from pathlib import Path

    from spyglass.app import create_app
    from tests.conftest import test_settings as make_settings

    app = create_app(make_settings(Path(str(tmp_path)) / "data", rate_limit_search="2/minute"))
    async with app.router.lifespan_context(app):
        async with client_for(app) as client:
            await client.put("/collections/v", json={"dim": 2})
            body = {"vector": [1.0, 0.0], "k": 1}
            codes = [(await client.post("/collections/v/search", json=body)) for _ in range(3)]
            assert [r.status_code for r in codes] == [200, 200, 429]
            assert_problem(codes[2], 429, "rate-limited")
            assert "RateLimit-Policy" in codes[0].headers
            metrics = (await client.get("/metrics")).text
            assert 'spyglass_http_rate_limited_total{route_class="search"} 1.0' in metrics
            assert (await client.get("/readyz")).status_code == 200
