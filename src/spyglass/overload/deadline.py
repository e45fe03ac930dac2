"""When a request's work should stop: its time budget ran out, or it was given up.

Admission control gives every admitted request a :class:`Deadline` in
:data:`current_deadline`; work handed to threads carries it along (the thread
runs in a copy of the request's context, see :func:`spyglass.routes.deps.run`).
Long work checks it between steps (:func:`check`: between the queries of a
batch, before encoding, before the store, between reranks, while waiting for an
encoder batch), so that a request answered 503 over its budget stops using the
CPU soon after instead of running to its end for nobody.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar

from spyglass.errors import Abandoned


class Deadline:
    """A point in ``time.monotonic()`` seconds past which work is abandoned; ``cancel``
    abandons it earlier (the request was answered or dropped)."""

    __slots__ = ("at", "reason", "on_hand_off")

    def __init__(self, at: float) -> None:
        self.at = at
        self.reason: str | None = None
        self.on_hand_off: Callable[[], None] | None = None
        """Called when the work is first handed to a thread: admission then starts
        watching for the client going away (work done on the loop ends first anyway)."""

    def hand_off(self) -> None:
        if self.on_hand_off is not None:
            self.on_hand_off()
            self.on_hand_off = None

    def cancel(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    @property
    def expired(self) -> bool:
        return self.reason is not None or time.monotonic() >= self.at

    def check(self) -> None:
        """Raise :class:`Abandoned` if the work should stop."""
        if self.expired:
            why = self.reason or "its time budget ran out"
            raise Abandoned(f"the request was stopped: {why}", headers={"Retry-After": "1"})


#: The deadline of the request whose work runs in this context, if any.
current_deadline: ContextVar[Deadline | None] = ContextVar("spyglass_deadline", default=None)


def check() -> None:
    """Raise :class:`Abandoned` if the current request's work should stop."""
    deadline = current_deadline.get()
    if deadline is not None:
        deadline.check()
