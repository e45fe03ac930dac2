"""The door: a request its lane could not take is refused before any other layer runs.

Past capacity most requests are refused, so what a refusal costs decides how much
of the CPU is left for the work admitted (at 8x capacity, seven refusals per
search). This outermost layer asks the request's lane (see
:mod:`spyglass.middleware.admission`) whether it is full, from the method and
path alone, before the body is read, the caller authenticated or anything
logged, and if so sends a response encoded once at start-up: a 503
``application/problem+json`` with ``Retry-After``, ``Cache-Control: no-store``
and the security headers. Requests the door lets in may still be refused by
admission control further in (a wait that ran out), with the usual per-request
log line.

Door refusals are counted (``spyglass_http_shed_total`` by route class and
``spyglass_admission_shed_total`` with reason ``queue_full``) but not logged one
by one: a log line per refusal would cost more than the refusal. The
``spyglass.access`` logger gets one summary line per second while refusals go on.
They carry no ``X-Request-ID`` and are not in ``spyglass_http_requests_total``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spyglass.errors import PROBLEM_CONTENT_TYPE, Unavailable
from spyglass.middleware.access_log import ACCESS_LOGGER
from spyglass.middleware.admission import Admission
from spyglass.middleware.security_headers import API_CSP, common_headers
from spyglass.overload.lane import QUEUE_FULL, Lane
from spyglass.overload.pacer import Pacer
from spyglass.settings import Settings

SUMMARY_EVERY_S = 1.0
DOOR_STATE = "spyglass.door"
"""The lifespan state key under which the app hands its :class:`Door` to the server."""
DOOR_PASSED = "spyglass.door_passed"
"""The request state key the HTTP protocol sets on a request its door let in."""
DEFAULT_REFUSAL_RATE: float = Settings.model_fields["admission_refusal_rate"].default


@dataclass(frozen=True)
class Refusal:
    """The door's 503 for route class ``name``, encoded once: as ASGI messages, and as
    the header lines and body an HTTP server writes itself (without status line, its
    own ``date``/``server`` headers, or the blank line)."""

    name: str
    start: Message
    body: Message
    header_lines: bytes
    content: bytes


def refusal(name: str, retry_after_s: int, hsts: str | None) -> Refusal:
    """The door's 503 for route class ``name``."""
    detail = f"the server is at capacity for {name} requests; retry later"
    body = orjson.dumps(Unavailable(detail).to_problem())
    headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after_s).encode()),
        (b"cache-control", b"no-store"),
        (b"content-security-policy", API_CSP.encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in common_headers(hsts)]
    return Refusal(
        name=name,
        start={"type": "http.response.start", "status": 503, "headers": headers},
        body={"type": "http.response.body", "body": body, "more_body": False},
        header_lines=b"".join(k + b": " + v + b"\r\n" for k, v in headers),
        content=body,
    )


class Door:
    """Decides, from the method and path alone, whether a request's lane is too full to
    take it, and counts and summarizes what it refuses."""

    def __init__(
        self,
        admission: Admission,
        on_shed: Callable[[str, str, int], None] | None = None,
        hsts: str | None = None,
        refusal_rate: float = DEFAULT_REFUSAL_RATE,
    ) -> None:
        self.admission = admission
        self.on_shed = on_shed
        self.pacer: Pacer[Any] = Pacer(refusal_rate)
        """Paces the refusals the HTTP protocol sends (:mod:`spyglass.overload.pacer`)."""
        self.drain: asyncio.TimerHandle | None = None
        """The protocol's timer for the next parked refusal, if one is set."""
        self.answers = {
            name: refusal(name, admission.retry_after_s, hsts) for name in admission.gates
        }
        self.log = logging.getLogger(ACCESS_LOGGER)
        self._refused: dict[str, int] = {}
        self.encoded: dict[tuple[str, bool, bool], tuple[object, bytes]] = {}
        """Refusals as the HTTP protocol sends them (by route class, keep-alive and HEAD),
        with the default headers they were made with."""
        self._pending: dict[str, int] = {}
        """Refusals not yet in the metrics, by route class (see ``_count``)."""
        self._since: float | None = None

    def snapshot(self) -> dict[str, Any]:
        """The refusal pace and the parked requests, for ``/status``."""
        pacer = self.pacer
        return {
            "refusal_rate": pacer.rate,
            "parked": len(pacer.parked),
            "parked_total": pacer.parked_total,
        }

    def refuse(self, method: str, path: str) -> Refusal | None:
        """The answer for a request refused here (counted), or None to let it in."""
        answer = self.enter(method, path)
        return answer if isinstance(answer, Refusal) else None

    def enter(self, method: str, path: str) -> Refusal | Lane | None:
        """The answer for a request refused here (counted); else the lane it enters
        (which an HTTP server may count it in until it is answered), or None."""
        name, gate = self.admission.gate_for(method, path)
        if gate is None:
            return None
        if not gate.turn_away():
            return gate.lane
        self._count(name, time.monotonic())
        return self.answers[name]

    def _count(self, name: str, now: float) -> None:
        if self.on_shed is not None:
            # Counted once per turn of the loop: a storm refuses dozens in one, and each
            # count in the metrics' shared files costs a lock and a write.
            first = not self._pending
            self._pending[name] = self._pending.get(name, 0) + 1
            if first:
                try:
                    asyncio.get_running_loop().call_soon(self._flush)
                except RuntimeError:  # no loop: count it now
                    self._flush()
        self._refused[name] = self._refused.get(name, 0) + 1
        if self._since is None:
            self._since = now
            return
        if now - self._since < SUMMARY_EVERY_S:
            return
        if self.log.isEnabledFor(logging.INFO):
            counts = ", ".join(f"{n} {c}" for n, c in sorted(self._refused.items()))
            self.log.info(
                "door: %d requests refused with 503 in %.1f s (%s): at capacity",
                sum(self._refused.values()),
                now - self._since,
                counts,
                extra={"fields": {"event": "shed", "status": 503, "refused": self._refused}},
            )
        self._refused = {}
        self._since = now

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        if self.on_shed is not None:
            for name, count in pending.items():
                self.on_shed(name, QUEUE_FULL, count)


class DoorMiddleware:
    """Refuses, at once and cheaply, what the request's lane is too full to take.

    Under ``spyglass serve`` most refusals happen earlier still, in the HTTP protocol
    (:mod:`spyglass.overload.http_protocol`), before the request is a task; this layer
    refuses the rest, and all of them under any other ASGI server."""

    def __init__(self, app: ASGIApp, door: Door) -> None:
        self.app = app
        self.door = door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and DOOR_PASSED not in scope.get("state", ()):
            answer = self.door.refuse(scope["method"], scope["path"])
            if answer is not None:
                await send(answer.start)
                await send(answer.body)
                return
        await self.app(scope, receive, send)


def install_door(
    app: FastAPI,
    admission: Admission,
    *,
    hsts: str | None = None,
    refusal_rate: float = DEFAULT_REFUSAL_RATE,
) -> Door:
    """Add the door outside every other layer (call it after adding them all) and
    store it as ``app.state.door``."""
    metrics = getattr(app.state, "metrics", None)
    on_shed = None if metrics is None else metrics.door_refused
    door = Door(admission, on_shed, hsts, refusal_rate)
    app.state.door = door
    app.add_middleware(DoorMiddleware, door=door)
    return door
