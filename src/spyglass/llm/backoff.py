"""How long to wait before the next try of an LLM call.

Exponential backoff with full jitter (a uniform draw between 0 and the doubled
delay, so clients that failed together do not retry together), unless the
upstream said when to come back: a ``Retry-After`` header wins, capped like
every other delay.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

__all__ = ["ceiling", "delay", "parse_retry_after"]


def ceiling(base_s: float, cap_s: float, retry: int) -> float:
    """The most the ``retry``-th retry (0 for the first) may wait: ``base_s`` doubled per
    retry, capped at ``cap_s``."""
    return min(cap_s, base_s * 2.0 ** min(retry, 64))


def delay(
    base_s: float,
    cap_s: float,
    retry: int,
    *,
    retry_after_s: float | None = None,
    random: Callable[[], float],
) -> float:
    """Seconds to wait before the ``retry``-th retry: the upstream's ``Retry-After`` when it
    gave one, else a random draw in ``[0, ceiling)``; never more than ``cap_s``."""
    if retry_after_s is not None:
        return min(cap_s, max(0.0, retry_after_s))
    return random() * ceiling(base_s, cap_s, retry)


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """The seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None
    when it is absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
