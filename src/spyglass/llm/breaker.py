"""A circuit breaker: stop calling an upstream that keeps failing, and try it again later.

::

    closed ──(``failures`` failed calls in a row)──▶ open
    open ──(``reset_s`` passed; the next call is let through as the trial)──▶ half-open
    half-open ──(trial succeeds)──▶ closed
    half-open ──(trial fails)──▶ open, for another ``reset_s``

While open, and while the trial is in flight, :meth:`CircuitBreaker.allow` says no,
so callers fail at once instead of waiting for timeouts. The clock is injectable
so tests can move time without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

__all__ = ["CircuitBreaker", "State"]

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Counts consecutive failed calls and opens after ``failures`` of them for ``reset_s``.

    A caller asks :meth:`allow` before a call and reports how it ended with exactly one
    of :meth:`record_success`, :meth:`record_failure` or :meth:`release` (the call ended
    without telling whether the upstream works, e.g. it was cancelled). Thread-safe.
    """

    def __init__(
        self,
        failures: int,
        reset_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        if reset_s <= 0:
            raise ValueError("reset_s must be positive")
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failed = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> State:
        """``closed``, ``open`` (failing fast) or ``half-open`` (a trial may go, or is going)."""
        with self._lock:
            return self._state()

    @property
    def consecutive_failures(self) -> int:
        """Failed calls since the last success."""
        return self._failed

    def allow(self) -> bool:
        """Whether a call may go now. In half-open, the first caller gets True and becomes
        the trial; everyone else gets False until it reports."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half-open" and not self._trial:
                self._trial = True
                return True
            return False

    def retry_after(self) -> float:
        """Seconds until a call may be let through again: what is left of the open period,
        ``reset_s`` while a trial is in flight, 0 when closed."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            left = self._opened_at + self.reset_s - self._clock()
            if left > 0:
                return left
            return self.reset_s if self._trial else 0.0

    def record_success(self) -> None:
        """The upstream answered: close the breaker and forget earlier failures."""
        with self._lock:
            self._failed = 0
            self._opened_at = None
            self._trial = False

    def record_failure(self) -> None:
        """The upstream failed: open after ``failures`` in a row, or at once after a trial."""
        with self._lock:
            self._failed += 1
            if self._trial or self._failed >= self.failures:
                self._opened_at = self._clock()
            self._trial = False

    def release(self) -> None:
        """An allowed call ended without a verdict: free the trial slot, change nothing else."""
        with self._lock:
            self._trial = False

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.reset_s:
            return "open"
        return "half-open"
