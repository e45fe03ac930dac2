"""One route class's share of a worker: a concurrency limit and a short, self-timing queue.

A :class:`Lane` runs at most ``limit`` requests at once; others wait in a queue
that follows CoDel's two delays (``target``, ``interval``) with the "adaptive
LIFO" of Facebook's RPC servers:

- a burst may wait up to ``interval``, first come first served. The queue may
  then hold as many requests as could start within ``interval`` at the lane's
  *uncontended* service time (the lowest seen, as TCP Vegas takes its base round
  trip, slowly forgotten: ``BASE_DOUBLING_S``), so a steady population (a few
  dozen clients that each send again once answered) is served in order and
  nobody is refused: the server is at its capacity, not past it;
- once the queue has *overflowed* (a request was refused because it was full)
  within the last ``interval``, the lane is *overloaded*: arrivals outrun the
  service, and a longer queue would only add delay. The queue then holds only
  what can start within ``target`` at the *measured* service time (a running
  mean, which grows when refusals and other work take the CPU); no request may
  wait longer than ``target`` (those that have, the burst's included, are
  refused at once), and the newest waiter is served first (last in, first out),
  so the requests that run are fresh and the ones refused are those whose
  clients may have given up already.

Clients that resend a refused request at once can keep that short queue
overflowing for ever, and their refusals slow the service it is sized by. So a
lane overloaded for ``HOLD_INTERVALS`` intervals on end (5 s) opens its burst
queue again for one ``interval``: a real excess overflows it, or makes a request
wait a whole interval, within moments and is overloaded again; such clients fit
in it, and are served in order from then on.

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
#: The uncontended service time is the lowest one seen (the CPU time of a request's
#: threads when known: a storm of refusals slows every search it meets, in wall time, and
#: must not be taken for the lane's own pace), which doubles every this many seconds
#: unless a lower one comes, so that a lasting change is taken within minutes.
BASE_DOUBLING_S = 60.0
#: Intervals of overload on end after which the burst queue is opened again (see above).
HOLD_INTERVALS = 50


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
        self.service_s: float | None = None
        """The running mean service time: how the lane serves now."""
        self._base: tuple[float, float] | None = None
        """The uncontended service time and when it was seen (see ``BASE_DOUBLING_S``)."""
        self.stats = LaneStats()
        self.dropped: list[Waiter] = []
        """Waiters refused while they waited (too old once overloaded), for the asyncio
        side to wake: see :meth:`take_dropped`."""

    def overloaded(self, now: float) -> bool:
        """Whether the queue has overflowed within the last ``interval`` (and the burst
        queue is not open again)."""
        return now - self.last_overflow < self.interval_s and now >= self.reopened_until

    def wait_s(self, now: float) -> float:
        """How long a request arriving now may wait: ``target`` when overloaded."""
        return self.target_s if self.overloaded(now) else self.interval_s

    def queue_cap(self, now: float) -> int:
        """Waiters that can still start within the wait a newcomer would get: limit x
        ``target`` / the measured service time when overloaded, else limit x
        ``interval`` / the uncontended one."""
        if self.overloaded(now):
            return self._cap(self.target_s, self.service_s)
        return self._cap(self.interval_s, self.base_s(now))

    def base_s(self, now: float) -> float | None:
        """The uncontended service time: the lowest seen, doubled per ``BASE_DOUBLING_S``
        since."""
        if self._base is None:
            return None
        seen, at = self._base
        return seen * 2 ** ((now - at) / BASE_DOUBLING_S)

    def _cap(self, wait_s: float, service_s: float | None) -> int:
        if service_s is None:
            return self.queue_max
        starts = self.limit * wait_s / max(service_s, 1e-6)
        return min(self.queue_max, max(1, math.ceil(starts)))

    def _overflow(self, now: float) -> None:
        """The queue overflowed (or made a request wait a whole interval)."""
        if not self.overloaded(now):
            self.overloaded_since = now
            self.reopened_until = -math.inf
        elif now - self.overloaded_since >= self.interval_s * HOLD_INTERVALS:
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

    def release(
        self, now: float, service_s: float | None = None, cpu_s: float | None = None
    ) -> Waiter | None:
        """A request finished (``service_s`` after it started, ``cpu_s`` of its threads'
        CPU if known): its slot goes to the waiter that should run next, which is
        returned, or back to the lane."""
        if service_s is not None:
            previous = self.service_s
            self.service_s = (
                service_s if previous is None else previous + SERVICE_ALPHA * (service_s - previous)
            )
            own = cpu_s or service_s
            base = self.base_s(now)
            if base is None or own <= base:
                self._base = (own, now)
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
        up, which counts as an overflow."""
        self.stats.shed[QUEUE_DELAY] += 1
        waiter.expires = -math.inf
        if ran_out and now - waiter.enqueued >= self.interval_s and not self.overloaded(now):
            self._overflow(now)

    def snapshot(self, now: float) -> dict[str, Any]:
        """The lane's state for ``/status``: limit, in flight, queued, delays, sheds."""
        delays = sorted(self.stats.delays)
        base = self.base_s(now)
        return {
            "limit": self.limit,
            "in_flight": self.in_flight,
            "queued": len(self.waiting),
            "entered": self.entered,
            "queue_cap": self.queue_cap(now),
            "overloaded": self.overloaded(now),
            "service_ms": None if self.service_s is None else round(self.service_s * 1000, 3),
            "base_service_ms": None if base is None else round(base * 1000, 3),
            "queue_delay_p50_ms": _ms(delays, 0.5),
            "queue_delay_p99_ms": _ms(delays, 0.99),
            "admitted": self.stats.admitted,
            "shed": dict(self.stats.shed),
        }


def _ms(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)
