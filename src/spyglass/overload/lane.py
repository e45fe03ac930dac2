"""One route class's share of a worker: a concurrency limit and a short, self-timing queue.

A :class:`Lane` runs at most ``limit`` requests at once; others wait in a queue
that follows CoDel's two delays (``target``, ``interval``) with the "adaptive
LIFO" of Facebook's RPC servers:

- a burst may wait up to ``interval``, first come first served. The queue may
  then hold as many requests as could start within ``interval`` at the measured
  service time (a running mean);
- once the queue has *overflowed* (a request was refused because it was full)
  within the last ``interval``, the lane is *overloaded*: arrivals outrun the
  service, and a longer queue would only add delay. The queue then holds only
  what can start within ``target`` at the *measured* service time (a running
  mean, which grows when refusals and other work take the CPU); no request may
  wait longer than ``target`` (those that have, the burst's included, are
  refused at once), and the newest waiter is served first (last in, first out),
  so the requests that run are fresh and the ones refused are those whose
  clients may have given up already.

An HTTP/1.1 connection holds at most one request at a time. So when the HTTP
server reports the worker's open connections (:class:`Census`) and there are no
more of them than the lane's slots and ``queue_max``, every one of their requests
may wait in the burst queue, whatever the service time, and nothing can overflow
it: a long wait is then a steady population of clients that each send again
once answered (a connection pool, a closed-loop benchmark) taking its turn, not
arrivals outrunning the service. Such a request may wait ``FIT_INTERVALS``
intervals, and one whose wait runs out does not make the lane overloaded.
Refusing such clients would only bring them back at once; served in order,
nobody is refused: the server is at its capacity, not past it.

Clients that resend a refused request at once can keep that short queue
overflowing for ever, and their refusals slow the service it is sized by. So a
lane overloaded for ``HOLD_INTERVALS`` intervals on end (5 s), whose open
connections would all fit in the burst queue (or are not counted), opens it
again for one ``interval``: a real excess overflows it within moments and is
overloaded again, and the next try waits twice as long; such clients fit in it,
and are served in order from then on.

A request that could not start within the wait a newcomer would get is refused
at once, at the door, before any of its work is done.

Pure bookkeeping: no asyncio, no clock of its own (every method takes ``now``,
monotonic seconds), so tests drive it step by step. The asyncio side is in
:mod:`spyglass.middleware.admission`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

QUEUE_FULL = "queue_full"
QUEUE_DELAY = "queue_delay"
BUDGET = "budget"
SHED_REASONS = (QUEUE_FULL, QUEUE_DELAY, BUDGET)

#: Weight of each new service time in the running mean (an EWMA over ~20 requests).
SERVICE_ALPHA = 0.05
#: Intervals of overload on end after which the burst queue is opened again (see above);
#: doubled after each try that overflowed, up to ``HOLD_MAX_INTERVALS``.
HOLD_INTERVALS = 50
HOLD_MAX_INTERVALS = 640
#: How many intervals a request may wait while every open connection fits in the queue.
FIT_INTERVALS = 10


@dataclass
class Census:
    """The worker's open connections, kept by its HTTP server (None when it does not
    say); shared by the worker's lanes."""

    connections: int | None = None


@dataclass(eq=False)
class Waiter:
    """A request waiting for a slot: when it came, until when it may wait."""

    enqueued: float
    expires: float
    granted: bool = False
    handle: Any = None
    """The asyncio side's future, resolved when the slot is handed over."""


@dataclass
class LaneStats:
    """Counters of one lane: ``admitted``, ``shed`` by reason, the last queue delays."""

    admitted: int = 0
    shed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SHED_REASONS, 0))
    delays: deque[float] = field(default_factory=lambda: deque(maxlen=512))


class Lane:
    """A concurrency limit with a CoDel/adaptive-LIFO queue (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        limit: int,
        queue_max: int,
        target_s: float = 0.005,
        interval_s: float = 0.1,
        census: Census | None = None,
    ) -> None:
        if limit < 1 or queue_max < 0 or not 0 < target_s <= interval_s:
            raise ValueError(f"invalid lane {name}: limit {limit}, queue {queue_max}")
        self.name = name
        self.limit = limit
        self.queue_max = queue_max
        self.target_s = target_s
        self.interval_s = interval_s
        self.census = census or Census()
        self.in_flight = 0
        self.waiting: deque[Waiter] = deque()
        self.entered = 0
        """Requests the HTTP protocol's door let in whose tasks have not yet ended (0 under
        other servers): those not yet at admission count too. A search served on the
        event loop never waits at admission, so without them the lane would look empty
        while a loop iteration's worth of requests waits to run."""
        self.last_overflow = -math.inf
        self.overloaded_since = -math.inf
        """When the current overload began (its first overflow)."""
        self.reopened_until = -math.inf
        """The end of the interval for which the burst queue is open again."""
        self.hold_intervals = HOLD_INTERVALS
        """Intervals of overload before the next try of the burst queue."""
        self.service_s: float | None = None
        """The running mean service time: how the lane serves now."""
        self.stats = LaneStats()
        self.dropped: list[Waiter] = []
        """Waiters refused while they waited (too old once overloaded), for the asyncio
        side to wake: see :meth:`take_dropped`."""

    def overloaded(self, now: float) -> bool:
        """Whether the queue has overflowed within the last ``interval`` (and the burst
        queue is not open again)."""
        return now - self.last_overflow < self.interval_s and now >= self.reopened_until

    def wait_s(self, now: float) -> float:
        """How long a request arriving now may wait: ``target`` when overloaded, else
        ``interval``, or ``FIT_INTERVALS`` of them while every open connection fits (its
        client would only send again: the queue, not the wait, bounds the delay)."""
        if self.overloaded(now):
            return self.target_s
        return self.interval_s * FIT_INTERVALS if self.fits() else self.interval_s

    def queue_cap(self, now: float) -> int:
        """Waiters that can still start within the wait a newcomer would get: limit x
        ``target`` / the measured service time when overloaded, else limit x
        ``interval`` / that time, or ``queue_max`` when every open connection fits."""
        if self.overloaded(now):
            return self._cap(self.target_s, self.service_s)
        if self.fits():
            return self.queue_max
        return self._cap(self.interval_s, self.service_s)

    def fits(self) -> bool:
        """Whether every open connection's request may run or wait here (false when the
        HTTP server does not count connections)."""
        connections = self.census.connections
        return connections is not None and connections <= self.limit + self.queue_max

    def _cap(self, wait_s: float, service_s: float | None) -> int:
        if service_s is None:
            return self.queue_max
        starts = self.limit * wait_s / max(service_s, 1e-6)
        return min(self.queue_max, max(1, math.ceil(starts)))

    def _overflow(self, now: float) -> None:
        """The queue overflowed (or made a request wait a whole interval)."""
        if not self.overloaded(now):
            if now >= self.reopened_until + self.interval_s:  # a new overload
                self.hold_intervals = HOLD_INTERVALS
            elif self.reopened_until > -math.inf:  # the try overflowed: wait longer
                self.hold_intervals = min(2 * self.hold_intervals, HOLD_MAX_INTERVALS)
            self.overloaded_since = now
            self.reopened_until = -math.inf
        elif now - self.overloaded_since >= self.interval_s * self.hold_intervals and (
            self.census.connections is None or self.fits()
        ):
            self.reopened_until = now + self.interval_s  # try the burst queue again
            self.overloaded_since = self.reopened_until
        self.last_overflow = now

    def turn_away(self, now: float) -> bool:
        """Whether a request arriving now is refused at once (the door's test); if so, it
        is counted as shed with ``queue_full``."""
        if self.ahead() < self.limit:
            return False
        self._drop_stale(now)
        if self.ahead() - self.limit < self.queue_cap(now):
            return False
        self.stats.shed[QUEUE_FULL] += 1
        self._overflow(now)
        return True

    def ahead(self) -> int:
        """Requests a newcomer would find ahead of it: running or waiting, or let in by
        the door and not yet answered, whichever is more."""
        return max(self.entered, self.in_flight + len(self.waiting))

    def arrive(self, now: float) -> Waiter | bool:
        """True: run now. A :class:`Waiter`: wait for :meth:`release` to grant it, until
        its ``expires``. False: refused, the queue is full."""
        if self.in_flight < self.limit and not self.waiting:
            self.in_flight += 1
            self.stats.admitted += 1
            self.stats.delays.append(0.0)
            return True
        if self.turn_away(now):
            return False
        waiter = Waiter(enqueued=now, expires=now + self.wait_s(now))
        self.waiting.append(waiter)
        return waiter

    def release(self, now: float, service_s: float | None = None) -> Waiter | None:
        """A request finished, ``service_s`` after it started (None: it never ran): its
        slot goes to the waiter that should run next, which is returned, or back to the
        lane."""
        if service_s is not None:
            previous = self.service_s
            self.service_s = (
                service_s if previous is None else previous + SERVICE_ALPHA * (service_s - previous)
            )
        overloaded = self._drop_stale(now)
        while self.waiting:
            waiter = self.waiting.pop() if overloaded else self.waiting.popleft()
            if waiter.expires < now:  # its own timer has not fired yet
                self._refuse(waiter, now, ran_out=True)
                continue
            waiter.granted = True
            self.stats.admitted += 1
            self.stats.delays.append(now - waiter.enqueued)
            return waiter
        self.in_flight -= 1
        return None

    def take_dropped(self) -> list[Waiter]:
        """The waiters refused since the last call, whose requests should now be answered."""
        dropped, self.dropped = self.dropped, []
        return dropped

    def _drop_stale(self, now: float) -> bool:
        """If overloaded, refuse the waiters that have waited ``target`` or longer (the
        oldest, at the front); whether the lane is overloaded."""
        if not self.overloaded(now):
            return False
        oldest = now - self.target_s
        while self.waiting and self.waiting[0].enqueued <= oldest:
            waiter = self.waiting.popleft()
            self._refuse(waiter, now, ran_out=False)
            self.dropped.append(waiter)
        return True

    def give_up(self, waiter: Waiter, now: float, *, expired: bool = True) -> None:
        """A waiter's wait ran out (``expired``) or its request went away before it was
        granted."""
        if waiter.granted or waiter.expires == -math.inf:
            return
        self.waiting.remove(waiter)
        self._refuse(waiter, now, ran_out=expired)

    def _refuse(self, waiter: Waiter, now: float, *, ran_out: bool) -> None:
        """Count a waiter out of the queue ungranted and mark it refused for the asyncio
        side. One whose wait of a whole interval ran out says the queue is not keeping
        up, which counts as an overflow, unless every open connection fits in it."""
        self.stats.shed[QUEUE_DELAY] += 1
        waiter.expires = -math.inf
        if (
            ran_out
            and now - waiter.enqueued >= self.interval_s
            and not self.overloaded(now)
            and not self.fits()
        ):
            self._overflow(now)

    def snapshot(self, now: float) -> dict[str, Any]:
        """The lane's state for ``/status``: limit, in flight, queued, delays, sheds."""
        delays = sorted(self.stats.delays)
        return {
            "limit": self.limit,
            "in_flight": self.in_flight,
            "queued": len(self.waiting),
            "entered": self.entered,
            "queue_cap": self.queue_cap(now),
            "overloaded": self.overloaded(now),
            "service_ms": _ms_of(self.service_s),
            "connections": self.census.connections,
            "queue_delay_p50_ms": _ms(delays, 0.5),
            "queue_delay_p99_ms": _ms(delays, 0.99),
            "admitted": self.stats.admitted,
            "shed": dict(self.stats.shed),
        }


def _ms_of(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _ms(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)
