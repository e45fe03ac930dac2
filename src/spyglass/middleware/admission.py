"""Admission control: each worker bounds the work it accepts, per route class.

Every route class (see :mod:`spyglass.middleware.route_class`) has a
:class:`Budget` and a :class:`~spyglass.overload.lane.Lane`: at most
``in_flight`` requests run at once; others wait in a short queue that follows
CoDel's delays with adaptive LIFO (a burst may wait up to ``wait_ms``, first come
first served; once a queue has persisted that long, newcomers wait at most
``target_ms`` and the newest is served first), and that holds no more requests
than could start within that wait. Past that the answer is a 503 problem
(``urn:spyglass:problem:unavailable``) with ``Retry-After``: a server that is
full says so at once instead of growing a queue until everything times out.
The cheapest refusals happen before this layer, at the door
(:mod:`spyglass.middleware.door`), which reads the same lanes.
Classes have separate lanes, so saturated ingest never delays a search; the
``health`` class is never limited, so a busy worker is not mistaken for a dead
one by its load balancer.

A request's slot is held until the request returns *and* every piece of work it
handed to the thread pool has finished (:class:`Slot`, :data:`current_slot`):
Python cannot stop a thread, and a slot freed while its thread still runs would
let the next request in on a busy CPU.

A request over its time budget is cancelled (``asyncio.timeout`` around the rest
of the app), and its :class:`~spyglass.overload.deadline.Deadline` tells the work
it handed to threads to stop at their next check; so does a client that
disconnects after sending its request. If no response has started
it is answered 503, not 504: 504 says a *gateway* got no answer from *its
upstream*, which is what nginx in front of us says for its own timeouts; our
giving up on our own budget is load shedding, retryable like the other 503s, and
one problem type covers both. If the response had already started, nothing can
be changed; the server closes the connection.

:class:`Admission` holds the gates and their :class:`ClassStats` counters and is
stored as ``app.state.admission`` so the metrics module can read them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spyglass.errors import Unavailable
from spyglass.middleware.route_class import (
    ADMIN,
    ASK,
    HEALTH,
    INGEST,
    OTHER,
    SEARCH,
    SEARCH_LANES,
    TOP_SEARCH_LANES,
    collection_of,
    route_class,
    search_lane,
)
from spyglass.middleware.route_template import route_template
from spyglass.overload.deadline import Deadline, current_deadline
from spyglass.overload.lane import BUDGET, QUEUE_DELAY, QUEUE_FULL, Census, Lane, Waiter
from spyglass.problems import problem_response

log = logging.getLogger(__name__)

#: Paths whose lane is remembered (see ``Admission.gate_for``).
LANES_MEMO_SIZE = 4096
#: The longest a worker's event loop runs searches back to back before it polls its
#: sockets again (accepts, reads, asks the door): about a lane's target delay.
INLINE_SLICE_S = 0.005


@dataclass(frozen=True)
class Budget:
    """The work one route class may have in one worker.

    ``in_flight``: requests running at once (at least 1). ``queue``: requests
    that may wait for a slot (0: none wait; fewer when the measured service time
    says they could not start in time). ``wait_ms``: longest wait for a slot
    (CoDel's interval). ``target_ms``: longest wait once a queue has persisted
    for ``wait_ms`` (CoDel's target; capped at ``wait_ms``). ``timeout_s``: how
    long an admitted request may run (None: no limit).
    """

    in_flight: int
    queue: int
    wait_ms: int
    timeout_s: float | None = None
    target_ms: float = 5.0

    def __post_init__(self) -> None:
        if self.in_flight < 1 or self.queue < 0 or self.wait_ms < 0 or self.target_ms <= 0:
            raise ValueError(f"invalid admission budget {self}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"invalid admission budget {self}")

    def lane(self, name: str, census: Census | None = None) -> Lane:
        interval = max(self.wait_ms, 0.001) / 1000
        target = min(self.target_ms / 1000, interval)
        return Lane(
            name,
            limit=self.in_flight,
            queue_max=self.queue,
            target_s=target,
            interval_s=interval,
            census=census,
        )


class ClassStats:
    """Counters of one route class, read from its lane: gauges ``in_flight`` and
    ``queued``; totals ``admitted``, ``shed`` (503 for a full queue or an expired
    wait) and ``timed_out`` (cancelled over the time budget)."""

    def __init__(self, lane: Lane) -> None:
        self.lane = lane

    @property
    def in_flight(self) -> int:
        return self.lane.in_flight

    @property
    def queued(self) -> int:
        return len(self.lane.waiting)

    @property
    def admitted(self) -> int:
        return self.lane.stats.admitted

    @property
    def shed(self) -> int:
        return self.lane.stats.shed[QUEUE_FULL] + self.lane.stats.shed[QUEUE_DELAY]

    @property
    def timed_out(self) -> int:
        return self.lane.stats.shed[BUDGET]


class Slot:
    """One admitted request's hold on its lane, given back when the last holder lets go.

    The request itself holds it until it returns; work it hands to a thread holds
    it too (see :func:`spyglass.routes.deps.run`) until the thread finishes, so a
    request cancelled over its budget frees its slot only when its CPU is free.
    """

    __slots__ = ("gate", "started", "waited", "holds")

    def __init__(self, gate: Gate, started: float, waited: float) -> None:
        self.gate = gate
        self.started = started
        self.waited = waited
        self.holds = 1

    def hold(self) -> None:
        self.holds += 1

    def drop(self) -> None:
        self.holds -= 1
        if self.holds == 0:
            self.gate.release(self.started)


GRANTED = "spyglass.granted"
"""The request state key under which an HTTP protocol that made a request wait for its
lane's slot (the express lane) hands the slot to admission control, as :class:`Granted`."""


class Granted:
    """A slot waited for before the app ran, for admission control to take; given back
    by :meth:`release` if no layer took it (one refused the request first)."""

    __slots__ = ("slot",)

    def __init__(self, slot: Slot) -> None:
        self.slot: Slot | None = slot

    def take(self) -> Slot | None:
        slot, self.slot = self.slot, None
        return slot

    def release(self) -> None:
        slot = self.take()
        if slot is not None:
            slot.drop()


#: The slot of the request being served in this task, for work it hands to threads.
current_slot: ContextVar[Slot | None] = ContextVar("spyglass_admission_slot", default=None)


class Gate:
    """The asyncio side of a :class:`Lane`: futures for waiters, timers for their waits."""

    def __init__(self, budget: Budget, lane: Lane) -> None:
        self.budget = budget
        self.lane = lane
        self.stats = ClassStats(lane)
        self._run_since: float | None = None
        """When the loop began running this lane's work back to back (see ``ran_inline``)."""
        self.executor: ThreadPoolExecutor | None = None
        """The lane's own threads, one per slot, if it has them (searches do): the slots
        admission grants are then the threads that run the work."""

    async def acquire(self) -> Slot | str:
        """A slot, at once or after a wait; else why not (``queue_full``, ``queue_delay``)."""
        queued = self._queue(time.monotonic())
        if not isinstance(queued, tuple):
            return queued
        waiter, timer = queued
        try:
            await waiter.handle
        except BaseException:  # cancelled while waiting: leave the line cleanly
            timer.cancel()
            self._leave(waiter, time.monotonic(), expired=False)
            raise
        timer.cancel()
        return self._waited(waiter, time.monotonic())

    def reserve(self, then: Callable[[Slot | str], None]) -> Slot | str | None:
        """:meth:`acquire` for a caller that cannot await (an HTTP protocol): a slot or a
        refusal now, or None and, once the wait is over, ``then`` with one of them."""
        queued = self._queue(time.monotonic())
        if not isinstance(queued, tuple):
            return queued
        waiter, timer = queued

        def waited(_: asyncio.Future[None]) -> None:
            timer.cancel()
            then(self._waited(waiter, time.monotonic()))

        waiter.handle.add_done_callback(waited)
        return None

    def _queue(self, now: float) -> Slot | str | tuple[Waiter, asyncio.TimerHandle]:
        """A slot or a refusal now, or a place in the line: the waiter, whose future its
        grant resolves, and the timer of its expiry."""
        decision = self.lane.arrive(now)
        self._wake_dropped()
        if decision is True:
            return Slot(self, now, 0.0)
        if decision is False:
            return QUEUE_FULL
        waiter = decision
        loop = asyncio.get_running_loop()
        waiter.handle = handle = loop.create_future()
        # A bare future and one timer: asyncio.wait costs several times as much, and
        # every request waits here when a worker's one search slot is busy.
        return waiter, loop.call_later(max(0.0, waiter.expires - now), _resolve, handle)

    def _waited(self, waiter: Waiter, now: float) -> Slot | str:
        if waiter.granted:
            return Slot(self, now, now - waiter.enqueued)
        self._leave(waiter, now, expired=True)
        return QUEUE_DELAY

    def ran_inline(self, slot: Slot) -> None:
        """``slot``'s work ran on the event loop: let it go now, or, once the loop has run
        such work back to back for ``INLINE_SLICE_S``, on the loop's next turn.

        Searches that arrive together would otherwise all run in one turn of the loop,
        tens of milliseconds in which it accepts no connection, reads no request and
        asks the door nothing. Handed back on the next turn, the slot makes the rest
        wait at admission while the loop polls its sockets; doing that after every
        search would make each one pay for a turn and its refusals.
        """
        now = time.monotonic()
        if self._run_since is None:
            self._run_since = now
        if now - self._run_since < INLINE_SLICE_S:
            slot.drop()
            return
        asyncio.get_running_loop().call_soon(self._next_turn, slot)

    def _next_turn(self, slot: Slot) -> None:
        self._run_since = None
        slot.drop()

    def release(self, started: float | None) -> None:
        """Give a slot back: to the waiter the lane picks, else to the lane. ``started``:
        when its request began (its service time is measured), None if it never ran."""
        now = time.monotonic()
        service_s = None if started is None else now - started
        waiter = self.lane.release(now, service_s)
        self._wake_dropped()
        if waiter is not None:
            _resolve(waiter.handle)

    def turn_away(self) -> bool:
        """Whether a request arriving now is refused at once (see :meth:`Lane.turn_away`)."""
        refused = self.lane.turn_away(time.monotonic())
        self._wake_dropped()
        return refused

    def _wake_dropped(self) -> None:
        """Answer at once the waiters the lane refused, instead of at their timers."""
        if self.lane.dropped:
            for waiter in self.lane.take_dropped():
                _resolve(waiter.handle)

    def _leave(self, waiter: Waiter, now: float, *, expired: bool) -> None:
        if waiter.granted:  # granted just as we gave up: pass the slot on
            self.release(None)
        else:
            self.lane.give_up(waiter, now, expired=expired)


@dataclass
class Admission:
    """The gates of one worker, by route class; classes without a budget are not limited."""

    budgets: Mapping[str, Budget]
    retry_after_s: int = 1
    on_shed: Callable[[str, str], None] | None = None
    """Told of every refusal: route class and reason (metrics)."""
    on_admit: Callable[[str, float], None] | None = None
    """Told of every admission: route class and seconds waited (metrics)."""
    gates: dict[str, Gate] = field(init=False)
    stats: dict[str, ClassStats] = field(init=False)

    def __post_init__(self) -> None:
        self.census = Census()
        """The worker's open connections, for its lanes (kept by the HTTP protocol)."""
        self.gates = {name: Gate(b, b.lane(name, self.census)) for name, b in self.budgets.items()}
        self.stats = {name: gate.stats for name, gate in self.gates.items()}
        self.search_lanes: dict[str, str] = {}
        self._lanes: dict[tuple[str, str], tuple[str, Gate | None]] = {}
        """``gate_for``'s answers by method and path: the door asks for every request,
        refused ones included, and classifying a path costs more than the lane's test."""

    def gate_for(self, method: str, path: str) -> tuple[str, Gate | None]:
        """The lane a request draws on (its route class, searches by their collection's
        encoder) and that lane's gate; None for classes that are never limited."""
        found = self._lanes.get((method, path))
        if found is not None:
            return found
        name = route_class(method, path)
        if name == SEARCH:
            collection = collection_of(path)
            if collection is not None:
                name = self.search_lanes.get(collection, SEARCH)
            else:
                name = TOP_SEARCH_LANES.get(path, SEARCH)
        found = name, self.gates.get(name)
        if len(self._lanes) >= LANES_MEMO_SIZE:  # paths hold item ids: bounded, start over
            self._lanes.clear()
        self._lanes[(method, path)] = found
        return found

    def learn(self, collection: str, encoder: str) -> None:
        """Searches of ``collection`` (its client-facing name) go to ``encoder``'s lane."""
        lane = search_lane(encoder)
        if lane in self.gates and self.search_lanes.get(collection) != lane:
            self.search_lanes[collection] = lane
            self._lanes.clear()

    def open_pools(self) -> None:
        """Give each search lane threads of its own, as many as its slots (at start-up)."""
        for name in {SEARCH, *SEARCH_LANES.values()}:
            gate = self.gates.get(name)
            if gate is not None and gate.executor is None:
                gate.executor = ThreadPoolExecutor(
                    gate.lane.limit, thread_name_prefix=f"spyglass-{name}"
                )

    def close_pools(self) -> None:
        """Wait for the search lanes' threads to finish (at shutdown)."""
        for gate in self.gates.values():
            if gate.executor is not None:
                gate.executor.shutdown(wait=True)
                gate.executor = None

    def snapshot(self) -> dict[str, Any]:
        """Every lane's state, for ``/status``."""
        now = time.monotonic()
        return {name: gate.lane.snapshot(now) for name, gate in self.gates.items()}


class AdmissionMiddleware:
    """Admits, queues or sheds each HTTP request by its route class (see module doc)."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name, gate = self.admission.gate_for(scope["method"], scope["path"])
        if gate is None:
            await self.app(scope, receive, send)
            return
        granted = scope.get("state", {}).pop(GRANTED, None)  # waited for in the protocol
        taken = granted.take() if granted is not None else None
        if taken is not None and taken.gate is not gate:  # another lane's: not ours
            taken.drop()
            taken = None
        slot = taken if taken is not None else await gate.acquire()
        admission = self.admission
        if isinstance(slot, str):
            if admission.on_shed is not None:
                admission.on_shed(name, slot)
            detail = f"the server is at capacity for {name} requests; retry later"
            await self._refuse(detail, scope, receive, send)
            return
        if admission.on_admit is not None:
            admission.on_admit(name, slot.waited)
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        timeout_s = gate.budget.timeout_s
        budget = asyncio.timeout(timeout_s)
        deadline = Deadline(time.monotonic() + (math.inf if timeout_s is None else timeout_s))
        watcher: asyncio.Task[None] | None = None
        body_read = False

        def watch() -> None:
            nonlocal watcher
            if watcher is None and body_read:
                watcher = asyncio.ensure_future(_watch_disconnect(receive, deadline))

        async def receive_watching() -> Message:
            nonlocal body_read
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read = True  # from now on the client can only go away
                if deadline.on_hand_off is None:  # work went to a thread before the body
                    watch()
            return message

        deadline.on_hand_off = watch

        token = current_slot.set(slot)
        deadline_token = current_deadline.set(deadline)
        try:
            async with budget:
                await self.app(scope, receive_watching, send_tracking)
        except TimeoutError:
            if not budget.expired():  # the app's own TimeoutError, not our budget
                raise
            deadline.cancel("its time budget ran out")  # its threads stop at their next check
            gate.lane.stats.shed[BUDGET] += 1
            if admission.on_shed is not None:
                admission.on_shed(name, BUDGET)
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
            if watcher is not None:
                watcher.cancel()
            deadline.cancel("the request ended")
            current_deadline.reset(deadline_token)
            current_slot.reset(token)
            slot.drop()

    async def _refuse(self, detail: str, scope: Scope, receive: Receive, send: Send) -> None:
        error = Unavailable(detail, headers={"Retry-After": str(self.admission.retry_after_s)})
        await problem_response(error, Request(scope))(scope, receive, send)


def _resolve(handle: asyncio.Future[None]) -> None:
    """Wake a waiter (granted, refused or out of time), once."""
    if not handle.done():
        handle.set_result(None)


async def _watch_disconnect(receive: Receive, deadline: Deadline) -> None:
    """Cancel ``deadline`` if the client disconnects before its answer is sent."""
    message = await receive()
    if message["type"] == "http.disconnect":
        deadline.cancel("its client went away")


def install_admission(
    app: FastAPI,
    *,
    search: Budget,
    ingest: Budget,
    other: Budget,
    ask: Budget | None = None,
    admin: Budget | None = None,
    encoder_search: Budget | None = None,
    retry_after_s: int = 1,
) -> Admission:
    """Add admission control to ``app`` (before it starts) and store it as
    ``app.state.admission``; ``ask`` and ``admin`` default to the ``other`` budget,
    ``encoder_search`` (each encoder's search lane) to ``search``, each its own gate."""
    budgets = {
        SEARCH: search,
        **dict.fromkeys(set(SEARCH_LANES.values()), encoder_search or search),
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
