"""One route class's share of a worker: a concurrency limit and a short, self-timing queue.

A :class:`Lane` runs at most ``limit`` requests at once; others wait in a queue
whose discipline follows CoDel's two delays (``target``, ``interval``) the way
Facebook's RPC servers apply them ("adaptive LIFO"):

- while the queue has been empty at some point in the last ``interval``, it is a
  burst: a newcomer may wait up to ``interval``, first come first served;
- once the queue has not been empty for a whole ``interval``, the lane is
  *overloaded*: a newcomer may wait only ``target``, and the newest waiter is
  served first (last in, first out), so the requests that run are fresh ones and
  the old ones, which their clients may have given up on, are refused.

The queue is also bounded by how many requests can start within the wait a
newcomer would get: ``limit x wait / service time`` (the mean service time is
measured), so a request that would only time out in the queue is refused at
once, at the door, before any of its work is done.

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
        now: float = 0.0,
    ) -> None:
        if limit < 1 or queue_max < 0 or not 0 < target_s <= interval_s:
            raise ValueError(f"invalid lane {name}: limit {limit}, queue {queue_max}")
        self.name = name
        self.limit = limit
        self.queue_max = queue_max
        self.target_s = target_s
        self.interval_s = interval_s
        self.in_flight = 0
        self.waiting: deque[Waiter] = deque()
        self.last_empty = now
        self.service_s: float | None = None
        self.stats = LaneStats()

    def overloaded(self, now: float) -> bool:
        """Whether the queue has not been empty for a whole ``interval``."""
        return bool(self.waiting) and now - self.last_empty >= self.interval_s

    def wait_s(self, now: float) -> float:
        """How long a request arriving now may wait: ``target`` when overloaded."""
        return self.target_s if self.overloaded(now) else self.interval_s

    def queue_cap(self, now: float) -> int:
        """Waiters that can still start within ``wait_s``: limit x wait / service time."""
        if self.service_s is None:
            return self.queue_max
        starts = self.limit * self.wait_s(now) / max(self.service_s, 1e-6)
        return min(self.queue_max, max(1, math.ceil(starts)))

    def full(self, now: float) -> bool:
        """Whether a request arriving now would be refused at once (the door's test)."""
        if self.in_flight < self.limit and not self.waiting:
            return False
        return len(self.waiting) >= self.queue_cap(now)

    def arrive(self, now: float) -> Waiter | bool:
        """True: run now. A :class:`Waiter`: wait for :meth:`release` to grant it, until
        its ``expires``. False: refused, the queue is full."""
        if self.in_flight < self.limit and not self.waiting:
            self.in_flight += 1
            self.stats.admitted += 1
            self.stats.delays.append(0.0)
            return True
        if len(self.waiting) >= self.queue_cap(now):
            self.stats.shed[QUEUE_FULL] += 1
            return False
        if not self.waiting:
            self.last_empty = now
        waiter = Waiter(enqueued=now, expires=now + self.wait_s(now))
        self.waiting.append(waiter)
        return waiter

    def release(self, now: float, service_s: float | None = None) -> Waiter | None:
        """A request finished (``service_s`` after it started): its slot goes to the
        waiter that should run next, which is returned, or back to the lane."""
        if service_s is not None:
            previous = self.service_s
            self.service_s = (
                service_s if previous is None else previous + SERVICE_ALPHA * (service_s - previous)
            )
        overloaded = self.overloaded(now)
        while self.waiting:
            waiter = self.waiting.pop() if overloaded else self.waiting.popleft()
            if not self.waiting:
                self.last_empty = now
            if waiter.expires < now:  # its own timer has not fired yet
                self.stats.shed[QUEUE_DELAY] += 1
                waiter.expires = -math.inf  # marks it refused for the asyncio side
                continue
            waiter.granted = True
            self.stats.admitted += 1
            self.stats.delays.append(now - waiter.enqueued)
            return waiter
        self.in_flight -= 1
        return None

    def give_up(self, waiter: Waiter, now: float) -> None:
        """A waiter's wait ran out (or its request went away) before it was granted."""
        if waiter.granted or waiter.expires == -math.inf:
            return
        self.waiting.remove(waiter)
        if not self.waiting:
            self.last_empty = now
        self.stats.shed[QUEUE_DELAY] += 1
        waiter.expires = -math.inf

    def snapshot(self, now: float) -> dict[str, Any]:
        """The lane's state for ``/status``: limit, in flight, queued, delays, sheds."""
        delays = sorted(self.stats.delays)
        return {
            "limit": self.limit,
            "in_flight": self.in_flight,
            "queued": len(self.waiting),
            "queue_cap": self.queue_cap(now),
            "overloaded": self.overloaded(now),
            "service_ms": None if self.service_s is None else round(self.service_s * 1000, 3),
            "queue_delay_p50_ms": _ms(delays, 0.5),
            "queue_delay_p99_ms": _ms(delays, 0.99),
            "admitted": self.stats.admitted,
            "shed": dict(self.stats.shed),
        }


def _ms(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)
