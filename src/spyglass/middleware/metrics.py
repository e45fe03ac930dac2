"""Counts every HTTP request into ``Metrics``: totals, latency, in-flight, shed and limited.

Labels are the route *template* (``/collections/{name}/search``), never the raw
path, which holds collection names and item ids and would make the label set
unbounded. Requests that outer middleware refused before routing (a 503 from
admission control, a 429 from the rate limiter) carry no matched route in the
scope; :func:`~spyglass.middleware.route_template.route_template` finds theirs.

Place it *outside* the rate limiter and admission control (add it after them
with ``app.add_middleware``: the last added runs first), or their 429s and 503s
never reach it. Every 503 counts as shed and every 429 as rate-limited, by
route class (as admission control classes them), whichever layer sent it.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spyglass.metrics import Metrics
from spyglass.middleware.route_class import route_class
from spyglass.middleware.route_template import route_template

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpCounts:
    """Counts one answered HTTP request into ``Metrics``: the ASGI middleware below and
    the express lane (:mod:`spyglass.routes.express`) count alike."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # Label children by label values: ``.labels()`` costs more than the increment.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    def record(self, method: str, path: str, route: str, status: int, seconds: float) -> None:
        """Count a request by route template, method and status, and time it."""
        metrics = self.metrics
        method = method if method in METHODS else "OTHER"
        counted = self._counted.get((route, method, status))
        if counted is None:
            counted = metrics.requests.labels(route, method, str(status))
            self._counted[(route, method, status)] = counted
        counted.inc()
        timed = self._timed.get((route, method))
        if timed is None:
            timed = self._timed[(route, method)] = metrics.latency.labels(route, method)
        timed.observe(seconds)
        if status == 503:
            metrics.shed.labels(route_class(method, path)).inc()
        elif status == 429:
            metrics.rate_limited.labels(route_class(method, path)).inc()


class MetricsMiddleware:
    """Records each HTTP request's route, method, status and duration; other scopes pass."""

    def __init__(self, app: ASGIApp, counts: HttpCounts) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering
        recorded = False

        async def send_and_watch(message: Message) -> None:
            # Recorded (and out of flight) before the last body chunk leaves: a client
            # that holds the whole answer has been counted, even if its worker dies next.
            nonlocal status, recorded
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
            elif kind == "http.response.body" and not message.get("more_body", False):
                if not recorded:
                    recorded = True
                    self._record(scope, status, time.perf_counter() - started)
            await send(message)

        self.counts.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            if not recorded:
                self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        self.counts.metrics.in_flight.dec()
        self.counts.record(scope["method"], scope["path"], route_template(scope), status, seconds)
