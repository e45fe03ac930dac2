"""Confirming a person over the frames of a camera session, in bounded memory.

The original client uploads frames of a live camera with a ``session_id`` and
wants a ``confirmed_person`` once the same person was identified in ``needed``
of the last ``window`` frames (5 of 10 by default): one frame may be misread,
half of the recent ones rarely are. A frame without a known person (no face,
unknown face) still takes its place in the window.

Memory is bounded three ways: each session keeps only its last ``window``
answers; a session not seen for ``ttl_seconds`` is forgotten; and past
``max_sessions`` the least recently seen session is dropped. Sessions are keyed
by organisation and id, so one organisation cannot read or feed another's.

The state lives in the process: with several server workers, the frames of one
session must reach the same worker (or the tracker be shared) to be counted
together.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from spyglass.errors import ConfigError, InvalidRequest

DEFAULT_WINDOW = 10
DEFAULT_NEEDED = 5
#: A session idle this long is forgotten: ten minutes, far longer than the gap
#: between two frames of a live camera, short enough that abandoned ones go.
DEFAULT_TTL_SECONDS = 600.0
#: At most this many sessions are remembered per tracker (per worker process);
#: about 1 kB each with a window of 10 (measured with tracemalloc), so 10 MB at most.
DEFAULT_MAX_SESSIONS = 10_000
#: Longest session id a client may send (ids are kept as keys, so they cost memory).
MAX_SESSION_ID_LENGTH = 128


@dataclass(frozen=True)
class Observation:
    """What a frame's answer adds up to: the session's id (new if none was given)
    and the person confirmed by its last frames, if any."""

    session_id: str
    confirmed_person: str | None


@dataclass(slots=True)
class _Session:
    frames: deque[str | None]
    seen: float = 0.0


class SessionTracker:
    """Counts who was identified in the last frames of each session; thread-safe.

    ``clock`` returns seconds (default ``time.monotonic``); tests pass their own.
    """

    def __init__(
        self,
        window: int = DEFAULT_WINDOW,
        needed: int = DEFAULT_NEEDED,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window < 1:
            raise ConfigError(f"face session window must be at least 1, not {window}")
        if not 1 <= needed <= window:
            raise ConfigError(
                f"face session needed must be between 1 and the window ({window}), not {needed}"
            )
        if not ttl_seconds > 0:
            raise ConfigError(f"face session ttl must be positive, not {ttl_seconds}")
        if max_sessions < 1:
            raise ConfigError(f"face max sessions must be at least 1, not {max_sessions}")
        self.window = window
        self.needed = needed
        self.ttl_seconds = ttl_seconds
        self.max_sessions = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        # least recently seen first, so expiry and eviction pop from the front
        self._sessions: OrderedDict[tuple[str, str], _Session] = OrderedDict()

    def observe(self, org: str, session_id: str | None, person: str | None) -> Observation:
        """Add one frame's answer (``person`` identified, or None) to the session.

        ``session_id`` None or empty starts a new session with a fresh id. An id
        that expired or was evicted starts over with an empty window.
        """
        if session_id is not None and len(session_id) > MAX_SESSION_ID_LENGTH:
            raise InvalidRequest(
                f"session_id is longer than {MAX_SESSION_ID_LENGTH} characters",
                field="session_id",
            )
        if not session_id:
            session_id = uuid.uuid4().hex
        key = (org, session_id)
        with self._lock:
            now = self._clock()
            self._expire(now)
            session = self._sessions.get(key)
            if session is None:
                while len(self._sessions) >= self.max_sessions:
                    self._sessions.popitem(last=False)
                session = _Session(frames=deque(maxlen=self.window))
                self._sessions[key] = session
            else:
                self._sessions.move_to_end(key)
            session.frames.append(person)
            session.seen = now
            confirmed = self._confirmed(session.frames)
        return Observation(session_id=session_id, confirmed_person=confirmed)

    def __len__(self) -> int:
        """Sessions remembered now (expired ones included until the next observe)."""
        with self._lock:
            return len(self._sessions)

    def _expire(self, now: float) -> None:
        """Forget the sessions not seen for ``ttl_seconds`` (they are at the front)."""
        while self._sessions:
            key, oldest = next(iter(self._sessions.items()))
            if now - oldest.seen < self.ttl_seconds:
                return
            del self._sessions[key]

    def _confirmed(self, frames: deque[str | None]) -> str | None:
        """The person in at least ``needed`` of ``frames``; if two are (5 and 5 of
        10), the one with more frames, then the one seen last."""
        counts = Counter(person for person in frames if person is not None)
        best: str | None = None
        best_key = (0, -1)
        for position, person in enumerate(frames):
            if person is None or counts[person] < self.needed:
                continue
            key = (counts[person], position)
            if key > best_key:
                best, best_key = person, key
        return best
