"""How fast a worker sends refusals; the requests past that pace wait, unread, for one.

A refusal is cheap next to the work it spares, but not free (about 90 µs of a
core against about 1.2 ms for a vector search), and clients that send again as
soon as they are refused (a closed-loop benchmark, a retry loop that ignores
``Retry-After``, a connection pool behind a busy proxy) come back as fast as they
are answered: a thousand of them made a worker spend nearly all of its CPU on
refusals and serve 2% of what it could. So each worker sends at most ``rate``
refusals per second (a token bucket holding ``BURST_S`` of them). A request
refused past that pace is *parked*: its connection is no longer read, which costs
nothing while the kernel holds what the client sends next, and it gets its 503,
oldest first, when the pace allows, or after ``MAX_PARK_S`` whatever the pace.
Clients that wait for their answer before sending again are slowed to the pace;
the CPU stays with the requests admitted.

An open stream of arrivals is not slowed by this (its refusals are answered at
once) unless it outruns ``rate``: the default, 6,000 a second, was past the
refusals of eight times a worker's capacity for vector search through the ASGI
app (about 5,000 a second measured on one core); with the express lane
(:mod:`spyglass.routes.express`) that capacity is about a half higher, and the
refusals of eight times it (about 7,000 a second) outrun the default.

Pure bookkeeping on an explicit clock, like :class:`~spyglass.overload.lane.Lane`;
the HTTP protocol (:mod:`spyglass.overload.http_protocol`) does the parking.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

#: Refusals the bucket holds: this many seconds' worth at the full pace.
BURST_S = 0.05
#: The longest a request waits for its refusal, whatever the pace.
MAX_PARK_S = 1.0


@dataclass
class Pacer(Generic[T]):
    """A token bucket of ``rate`` refusals per second and the requests parked past it."""

    rate: float
    tokens: float = field(init=False)
    updated: float = field(default=-math.inf, init=False)
    parked: deque[tuple[float, T]] = field(default_factory=deque, init=False)
    parked_total: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"refusal rate must be positive, not {self.rate}")
        self.tokens = self.capacity

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate * BURST_S)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            elapsed = now - self.updated
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.updated = now

    def refuse_now(self, now: float) -> bool:
        """Whether a refusal may be sent now (it takes a token) rather than parked;
        never while others are parked, who are owed theirs first."""
        self._refill(now)
        if self.parked or self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def park(self, item: T, now: float) -> None:
        """``item`` waits for its refusal."""
        self.parked.append((now, item))
        self.parked_total += 1

    def due(self, now: float) -> list[T]:
        """The parked items to refuse now, oldest first: one per token, and any that has
        waited ``MAX_PARK_S``."""
        self._refill(now)
        out: list[T] = []
        while self.parked:
            since, item = self.parked[0]
            if self.tokens >= 1:
                self.tokens -= 1
            elif now - since < MAX_PARK_S:
                break
            self.parked.popleft()
            out.append(item)
        return out

    def next_due_s(self, now: float) -> float | None:
        """Seconds until :meth:`due` has something again (None: nothing is parked)."""
        if not self.parked:
            return None
        self._refill(now)
        for_token = max(0.0, (1 - self.tokens) / self.rate)
        for_age = self.parked[0][0] + MAX_PARK_S - now
        return max(0.0, min(for_token, for_age))
