"""Rate limits per caller and route class (OWASP API4), in memory or shared through Redis.

Who is limited: the API key (``scope["state"]["principal"].key_id``, once an
auth layer in front sets it), else the client IP. ``X-Forwarded-For`` is read
only when the direct peer is a configured trusted proxy, and then the client is
its right-most address that is not itself a trusted proxy: everything left of
that was written by the client and can be forged.

What is limited: each route class (see :mod:`spyglass.middleware.route_class`)
has its own budget, so a client searching hard still can ingest. A budget is a
string in the ``limits`` library's notation, usually two limits:
``"20/second;600/minute"``. Both are *moving windows* (exact counts over the last
second and the last minute): the short one is the burst (at most 20 requests in
any one second), the long one the sustained rate (600 a minute, 10/s on
average). A client that was quiet may burst, but cannot keep bursting. A class
with an empty budget, and the ``health`` class always, are not limited.

Over budget: 429 problem+json (``urn:spyglass:problem:rate-limited``) with
``Retry-After`` and the ``violated-policies`` member. Every limited response,
429 or not, carries ``RateLimit-Policy`` and ``RateLimit`` in the syntax of
draft-ietf-httpapi-ratelimit-headers-11 (structured-field lists), e.g.
``RateLimit-Policy: "search-1s";q=20;w=1, "search-60s";q=600;w=60`` and
``RateLimit: "search-1s";r=12;t=1, "search-60s";r=580;t=60``.

Where the counts live: in this process (``storage_uri=None``; each worker then
has its own counts) or in Redis (``redis://...``), shared by every worker and
machine. When Redis cannot be reached, ``fail_open`` decides: let requests
through unlimited (default; logged once and counted through ``metrics_hook``)
or refuse them with 503 + ``Retry-After``. After a failure Redis is left alone
for ``retry_s`` seconds, so an outage does not add a connect timeout to every
request. :meth:`RateLimiter.check` tells ``/readyz`` the storage state.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from fastapi import FastAPI
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spyglass.errors import (
    PROBLEM_CONTENT_TYPE,
    ConfigError,
    RateLimited,
    Unavailable,
)
from spyglass.middleware.route_class import HEALTH, route_class
from spyglass.problems import CLIENT_PATH, problem_response

log = logging.getLogger(__name__)

KEY_PREFIX = "spyglass-ratelimit"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Policy:
    """One limit of one route class, named as in the ``RateLimit*`` headers."""

    name: str
    item: RateLimitItem

    @property
    def window_s(self) -> int:
        return int(self.item.get_expiry())


@dataclass(frozen=True)
class Decision:
    """The outcome for one request: allowed or not, the headers to add, the limits broken."""

    allowed: bool
    headers: dict[str, str]
    violated: tuple[str, ...] = ()
    retry_after_s: int = 0


def parse_policies(limits_by_class: Mapping[str, str]) -> dict[str, tuple[Policy, ...]]:
    """``{"search": "20/second;600/minute"}`` -> policies per class; empty strings drop out."""
    out: dict[str, tuple[Policy, ...]] = {}
    for cls, text in limits_by_class.items():
        if cls == HEALTH or not text.strip():
            continue
        try:
            items = parse_many(text)
        except ValueError as exc:
            raise ConfigError(f"rate limit for {cls!r}: {exc}") from exc
        out[cls] = tuple(Policy(f"{cls}-{int(i.get_expiry())}s", i) for i in items)
    return out


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Trusted proxies as networks; a bare address is a /32 (or /128)."""
    try:
        return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())
    except ValueError as exc:
        raise ConfigError(f"trusted proxies: {exc}") from exc


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_ip(scope: Scope, trusted: tuple[IPNetwork, ...]) -> str:
    """The caller's address: the peer, or the right-most untrusted ``X-Forwarded-For`` hop
    when the peer is a trusted proxy."""
    peer = scope.get("client")
    peer_host = str(peer[0]) if peer else "unknown"
    address = _ip(peer_host)
    if address is None or not any(address in net for net in trusted):
        return str(address) if address is not None else peer_host
    hops = [
        hop
        for name, value in scope["headers"]
        if name == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
    ]
    for hop in reversed(hops):
        hop_ip = _ip(hop)
        if hop_ip is None:  # garbage a trusted proxy passed on: stop at the proxy
            break
        address = hop_ip
        if not any(hop_ip in net for net in trusted):
            break
    return str(address)


def caller_key(scope: Scope, trusted: tuple[IPNetwork, ...]) -> str:
    """``key:<id>`` for an authenticated caller, else ``ip:<address>``."""
    principal = (scope.get("state") or {}).get("principal")
    key_id = getattr(principal, "key_id", None)
    if key_id:
        return f"key:{key_id}"
    return f"ip:{client_ip(scope, trusted)}"


class RateLimiter:
    """The policies, the storage and its health; shared by every request of one worker."""

    def __init__(
        self,
        policies: Mapping[str, tuple[Policy, ...]],
        storage_uri: str | None,
        *,
        fail_open: bool = True,
        retry_s: float = 1.0,
        retry_after_s: int = 1,
        metrics_hook: Callable[[str], None] | None = None,
    ) -> None:
        self.policies = dict(policies)
        self.fail_open = fail_open
        self.retry_s = retry_s
        self.retry_after_s = retry_after_s
        self.metrics_hook = metrics_hook
        self.shared = storage_uri is not None
        if storage_uri is None:
            storage = storage_from_string("async+memory://")
        else:
            uri = storage_uri if storage_uri.startswith("async+") else f"async+{storage_uri}"
            storage = storage_from_string(
                uri,
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix=KEY_PREFIX,
                socket_connect_timeout=retry_s,
                socket_timeout=retry_s,
            )
        self.storage = cast(Storage, storage)  # an ``async+`` URI gives an async storage
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.failure: str | None = None  # why the storage last failed; None while healthy
        self._skip_until = 0.0

    async def decide(self, cls: str, key: str) -> Decision | None:
        """Count one request of ``key`` in ``cls``; None if the class is not limited."""
        policies = self.policies.get(cls)
        if not policies:
            return None
        if self.failure is not None and time.monotonic() < self._skip_until:
            return self._without_storage()
        try:
            decision = await self._count(cls, key, policies)
        except Exception as exc:  # any storage failure: the storage is down for us
            self._failed(exc)
            return self._without_storage()
        if self.failure is not None:
            log.warning("rate limit storage is reachable again")
            self.failure = None
        return decision

    async def check(self) -> str:
        """``"ok"`` or ``"unreachable: <why>"``: for ``/readyz``."""
        try:
            async with asyncio.timeout(self.retry_s * 2):
                await self.storage.get(f"{KEY_PREFIX}-readyz")
        except Exception as exc:
            self._failed(exc)
            return f"unreachable: {self.failure}"
        self.failure = None
        return "ok"

    async def close(self) -> None:
        """Close the storage's connections; the middleware calls it at lifespan shutdown."""
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        if client is not None:  # redis.asyncio.Redis: the limits storage has no close()
            await client.aclose()
        timer = getattr(self.storage, "timer", None)  # the memory storage's expiry task
        if isinstance(timer, asyncio.Task):
            timer.cancel()

    async def _count(self, cls: str, key: str, policies: tuple[Policy, ...]) -> Decision:
        violated = []
        for policy in policies:  # stop at the first broken limit; it is not counted
            if not await self.strategy.hit(policy.item, cls, key):
                violated.append(policy.name)
                break
        stats = await asyncio.gather(
            *(self.strategy.get_window_stats(p.item, cls, key) for p in policies)
        )
        now = time.time()
        resets = {
            p.name: max(1, math.ceil(s.reset_time - now))
            for p, s in zip(policies, stats, strict=True)
        }
        headers = {
            "RateLimit-Policy": ", ".join(
                f'"{p.name}";q={p.item.amount};w={p.window_s}' for p in policies
            ),
            "RateLimit": ", ".join(
                f'"{p.name}";r={max(0, s.remaining)};t={resets[p.name]}'
                for p, s in zip(policies, stats, strict=True)
            ),
        }
        if not violated:
            return Decision(True, headers)
        retry = max(resets[name] for name in violated)
        headers["Retry-After"] = str(retry)
        return Decision(False, headers, tuple(violated), retry)

    def _failed(self, exc: BaseException) -> None:
        cause = exc.__cause__ or exc
        why = f"{type(cause).__name__}: {cause}"
        if self.failure is None:
            mode = "letting requests through" if self.fail_open else "refusing requests"
            log.warning("rate limit storage unreachable (%s); %s", why, mode)
        self.failure = why
        self._skip_until = time.monotonic() + self.retry_s

    def _without_storage(self) -> Decision:
        outcome = "fail_open" if self.fail_open else "fail_closed"
        if self.metrics_hook is not None:
            self.metrics_hook(outcome)
        if self.fail_open:
            return Decision(True, {})
        return Decision(False, {"Retry-After": str(self.retry_after_s)})


class RateLimitMiddleware:
    """Counts each HTTP request against its caller's budget for its route class."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, trusted: tuple[IPNetwork, ...]) -> None:
        self.app = app
        self.limiter = limiter
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_at_shutdown(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cls = route_class(scope["method"], scope["path"])
        decision = await self.limiter.decide(cls, caller_key(scope, self.trusted))
        if decision is None:
            await self.app(scope, receive, send)
            return
        if not decision.allowed:
            await self._refuse(decision, cls, scope, receive, send)
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in decision.headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _closing_at_shutdown(self, send: Send) -> Send:
        async def send_closing(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.limiter.close()
            await send(message)

        return send_closing

    async def _refuse(
        self, decision: Decision, cls: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        request = Request(scope)
        if not decision.violated:  # storage down, failing closed
            error = Unavailable(
                "rate limits cannot be checked right now; retry later",
                headers=decision.headers,
            )
            await problem_response(error, request)(scope, receive, send)
            return
        limited = RateLimited(
            f"too many {cls} requests; retry in {decision.retry_after_s} s",
            headers=decision.headers,
        )
        body: dict[str, Any] = limited.to_problem(
            instance=scope.get(CLIENT_PATH) or request.url.path
        )
        body["violated-policies"] = list(decision.violated)
        response = JSONResponse(
            body, status_code=429, headers=decision.headers, media_type=PROBLEM_CONTENT_TYPE
        )
        await response(scope, receive, send)


def install_rate_limit(
    app: FastAPI,
    *,
    limits_by_class: Mapping[str, str],
    storage_uri: str | None = None,
    fail_open: bool = True,
    trusted_proxies: Iterable[str] = (),
    metrics_hook: Callable[[str], None] | None = None,
    retry_after_s: int = 1,
) -> RateLimiter:
    """Add rate limiting to ``app`` (before it starts); store it as ``app.state.rate_limiter``.

    ``limits_by_class`` maps route classes to ``limits`` strings (``"20/second;600/minute"``:
    burst, then sustained rate; ``""``: unlimited). ``storage_uri``: None keeps counts in
    this process, ``redis://host:port/db`` shares them. ``metrics_hook(outcome)`` is called
    with ``"fail_open"`` or ``"fail_closed"`` for each request decided without the storage.
    """
    limiter = RateLimiter(
        parse_policies(limits_by_class),
        storage_uri,
        fail_open=fail_open,
        retry_after_s=retry_after_s,
        metrics_hook=metrics_hook,
    )
    app.state.rate_limiter = limiter
    app.add_middleware(
        RateLimitMiddleware, limiter=limiter, trusted=parse_networks(trusted_proxies)
    )
    return limiter
