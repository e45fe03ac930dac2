"""Admission control: each worker bounds the work it accepts, per route class.

Every route class (see :mod:`spyglass.middleware.route_class`) has a
:class:`Budget`: at most ``in_flight`` requests run at once, at most ``queue``
more wait for a slot, none waits longer than ``wait_ms``, and an admitted request
gets ``timeout_s`` seconds. Past that the answer is an immediate 503 problem
(``urn:spyglass:problem:unavailable``) with ``Retry-After``: a server that is
full says so at once instead of growing a queue until everything times out.
Classes have separate gates, so saturated ingest never delays a search; the
``health`` class is never limited, so a busy worker is not mistaken for a dead
one by its load balancer.

A request over its time budget is cancelled (``asyncio.timeout`` around the rest
of the app) and its slot is freed. If no response has started it is answered
503, not 504: 504 says a *gateway* got no answer from *its upstream*, which is
what nginx in front of us says for its own timeouts; our giving up on our own
budget is load shedding, retryable like the other 503s, and one problem type
covers both. If the response had already started, nothing can be changed; the
server closes the connection. Work already handed to a thread pool is not
interrupted by the cancellation (Python cannot stop a thread); the pool's own
size still bounds it.

:class:`Admission` holds the gates and their :class:`ClassStats` counters and is
stored as ``app.state.admission`` so the metrics module can read them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spyglass.errors import Unavailable
from spyglass.middleware.route_class import ADMIN, ASK, HEALTH, INGEST, OTHER, SEARCH, route_class
from spyglass.middleware.route_template import route_template
from spyglass.problems import problem_response

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """The work one route class may have in one worker.

    ``in_flight``: requests running at once (at least 1). ``queue``: requests
    that may wait for a slot (0: none wait). ``wait_ms``: longest wait for a
    slot. ``timeout_s``: how long an admitted request may run (None: no limit).
    """

    in_flight: int
    queue: int
    wait_ms: int
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.in_flight < 1 or self.queue < 0 or self.wait_ms < 0:
            raise ValueError(f"invalid admission budget {self}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"invalid admission budget {self}")


@dataclass
class ClassStats:
    """Counters of one route class: gauges ``in_flight`` and ``queued``; totals
    ``admitted``, ``shed`` (503 for a full queue or an expired wait) and
    ``timed_out`` (cancelled over the time budget)."""

    in_flight: int = 0
    queued: int = 0
    admitted: int = 0
    shed: int = 0
    timed_out: int = 0


class Gate:
    """A semaphore with a bounded, time-limited line of waiters.

    Slots are handed over first come, first served: :meth:`release` gives the
    slot straight to the oldest waiter, so a newcomer cannot overtake the line.
    """

    def __init__(self, budget: Budget, stats: ClassStats) -> None:
        self.budget = budget
        self.stats = stats
        self._free = budget.in_flight
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> bool:
        """Take a slot; False at once if the line is full, or after ``wait_ms``."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return self._admitted()
        if len(self._waiters) >= self.budget.queue:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.stats.queued += 1
        try:
            await asyncio.wait((waiter,), timeout=self.budget.wait_ms / 1000)
        except BaseException:  # cancelled while waiting: leave the line cleanly
            self._leave(waiter)
            raise
        if waiter.done():
            self.stats.queued -= 1
            return self._admitted()
        self._leave(waiter)
        return False

    def release(self) -> None:
        """Give the slot back: to the oldest waiter, else to the pool."""
        self.stats.in_flight -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def _admitted(self) -> bool:
        self.stats.in_flight += 1
        self.stats.admitted += 1
        return True

    def _leave(self, waiter: asyncio.Future[None]) -> None:
        self.stats.queued -= 1
        if waiter.done():  # granted just as we gave up: pass the slot on
            self.stats.in_flight += 1
            self.release()
        else:
            waiter.cancel()
            self._waiters.remove(waiter)


@dataclass
class Admission:
    """The gates of one worker, by route class; classes without a budget are not limited."""

    budgets: Mapping[str, Budget]
    retry_after_s: int = 1
    gates: dict[str, Gate] = field(init=False)
    stats: dict[str, ClassStats] = field(init=False)

    def __post_init__(self) -> None:
        self.stats = {name: ClassStats() for name in self.budgets}
        self.gates = {name: Gate(b, self.stats[name]) for name, b in self.budgets.items()}


class AdmissionMiddleware:
    """Admits, queues or sheds each HTTP request by its route class (see module doc)."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = route_class(scope["method"], scope["path"])
        gate = self.admission.gates.get(name)
        if gate is None:
            await self.app(scope, receive, send)
            return
        if not await gate.acquire():
            gate.stats.shed += 1
            detail = f"the server is at capacity for {name} requests; retry later"
            await self._refuse(detail, scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        budget = asyncio.timeout(gate.budget.timeout_s)
        try:
            async with budget:
                await self.app(scope, receive, send_tracking)
        except TimeoutError:
            if not budget.expired():  # the app's own TimeoutError, not our budget
                raise
            gate.stats.timed_out += 1
            if started:
                log.warning(
                    "%s %s cancelled mid-response over its time budget",
                    scope["method"],
                    route_template(scope),
                )
                return
            detail = f"the request took longer than its {gate.budget.timeout_s:g} s budget"
            await self._refuse(detail, scope, receive, send)
        finally:
            gate.release()

    async def _refuse(self, detail: str, scope: Scope, receive: Receive, send: Send) -> None:
        error = Unavailable(detail, headers={"Retry-After": str(self.admission.retry_after_s)})
        await problem_response(error, Request(scope))(scope, receive, send)


def install_admission(
    app: FastAPI,
    *,
    search: Budget,
    ingest: Budget,
    other: Budget,
    ask: Budget | None = None,
    admin: Budget | None = None,
    retry_after_s: int = 1,
) -> Admission:
    """Add admission control to ``app`` (before it starts) and store it as
    ``app.state.admission``; ``ask`` and ``admin`` default to the ``other`` budget (each
    its own gate)."""
    budgets = {
        SEARCH: search,
        INGEST: ingest,
        ASK: ask or other,
        OTHER: other,
        ADMIN: admin or other,
    }
    assert HEALTH not in budgets
    admission = Admission(budgets, retry_after_s=retry_after_s)
    app.state.admission = admission
    app.add_middleware(AdmissionMiddleware, admission=admission)
    return admission
