"""When to try an upstream call again, and how a call that gives up is reported.

The LLM client (async) and the remote encoder (sync) run their own try loops, since
one awaits and the other blocks, but every decision between two tries is this
module's: whether the circuit breaker lets the call go at all (a half-open trial gets
a single try), how long to wait (exponential backoff with full jitter, or the
upstream's ``Retry-After``), when to stop (not retryable, out of retries, past the
deadline, breaker opened meanwhile), and the 503 a call that stops becomes, with its
``Retry-After``. It also builds the options of the one pooled HTTP client each holds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import httpx

from spyglass.errors import Unavailable
from spyglass.llm import backoff
from spyglass.llm.breaker import CircuitBreaker
from spyglass.llm.response import Failure

__all__ = ["RetryPolicy", "client_options"]

log = logging.getLogger(__name__)


def client_options(
    api_key: str | None, timeout_s: float, connect_timeout_s: float, max_connections: int
) -> dict[str, Any]:
    """Keyword arguments of an ``httpx.Client`` or ``AsyncClient`` for one upstream: the
    bearer key, the timeouts and a bounded connection pool."""
    return {
        "headers": {"Authorization": f"Bearer {api_key}"} if api_key else {},
        "timeout": httpx.Timeout(timeout_s, connect=connect_timeout_s),
        "limits": httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    }


class RetryPolicy:
    """The breaker, the backoff and the give-up of calls to one upstream.

    ``api`` and ``call`` name the upstream and one call to it in messages and logs
    (``"LLM API"``, ``"LLM call"``); nothing else of a call is ever logged.
    """

    def __init__(
        self,
        *,
        api: str,
        call: str,
        breaker: CircuitBreaker,
        retries: int,
        backoff_s: float,
        backoff_max_s: float,
        random: Callable[[], float],
    ) -> None:
        self.api = api
        self.call = call
        self.breaker = breaker
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._random = random

    def begin(self) -> int:
        """Let a call start, or raise the 503 of an open breaker; the retries it may make
        (none for the half-open trial)."""
        trial = self.breaker.state == "half-open"
        if not self.breaker.allow():
            raise Unavailable(
                f"the {self.api} is unavailable: it failed too often lately (circuit breaker open)",
                headers={"Retry-After": self.retry_after(None)},
            )
        return 0 if trial else self.retries

    def wait(
        self, failure: Failure, retry: int, retries: int, now: float, deadline: float
    ) -> float | None:
        """Seconds to wait before the next try after ``failure`` on try ``retry`` (from 0),
        or None when the call should give up instead."""
        seconds = backoff.delay(
            self.backoff_s,
            self.backoff_max_s,
            retry,
            retry_after_s=failure.retry_after_s,
            random=self._random,
        )
        if (
            not failure.retryable
            or retry >= retries
            or now + seconds >= deadline
            or self.breaker.state == "open"
        ):
            return None
        log.warning(
            "%s failed (%s); retry %d of %d in %.2f s",
            self.call,
            failure.reason,
            retry + 1,
            retries,
            seconds,
        )
        return seconds

    def give_up(self, failure: Failure, retry: int) -> Unavailable:
        """Count the call as failed for the breaker and make its 503."""
        was_open = self.breaker.state == "open"
        self.breaker.record_failure()
        if not was_open and self.breaker.state == "open":
            log.warning(
                "%s circuit breaker open for %g s after %d failures in a row",
                self.api,
                self.breaker.reset_s,
                self.breaker.consecutive_failures,
            )
        tries = retry + 1
        log.warning("%s failed (%s) after %d tries", self.call, failure.reason, tries)
        retry_after = failure.retry_after_s
        if retry_after is None:
            retry_after = backoff.ceiling(self.backoff_s, self.backoff_max_s, retry)
        return Unavailable(
            f"the {self.api} did not answer: {failure.reason} (after {tries} tries)",
            headers={"Retry-After": self.retry_after(retry_after)},
        )

    def retry_after(self, fallback_s: float | None) -> str:
        """Whole seconds, at least 1: the breaker's open time left if it is open, else
        ``fallback_s``."""
        seconds = self.breaker.retry_after() or fallback_s or 1.0
        return str(max(1, math.ceil(seconds)))
