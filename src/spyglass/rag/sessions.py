"""Chat sessions: the last few turns of each conversation, bounded and expiring.

``POST /chat`` answers follow-up questions ("and who led them?") with the turns before
them. A session keeps at most ``turns`` question-and-answer pairs and is forgotten
``ttl_s`` seconds after its last turn. :class:`MemorySessions` holds at most
``max_sessions`` of them per worker (least recently used dropped first), so a client
inventing a session id per request cannot grow memory; :class:`RedisSessions` keeps
them in Redis, shared by every worker and instance, each a capped list with an expiry.

Like the query cache, sessions are a convenience, not a source of errors: a Redis
that fails makes a conversation start afresh (logged at most once a minute), never a
failed request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import orjson
import redis

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0


@dataclass(frozen=True)
class Turn:
    """One exchange of a conversation."""

    query: str
    response: str


class Sessions(Protocol):
    """Where conversations are kept. Safe to call from several threads."""

    def history(self, session_id: str) -> list[Turn]:
        """The session's turns, oldest first; empty for a new or expired session."""
        ...

    def add(self, session_id: str, turn: Turn) -> None:
        """Append ``turn``, dropping the oldest past the limit, and renew the expiry."""
        ...

    def close(self) -> None: ...


class MemorySessions:
    """Sessions in this worker's memory: at most ``max_sessions``, LRU."""

    def __init__(self, turns: int, ttl_s: float, max_sessions: int) -> None:
        self.turns = turns
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, tuple[float, list[Turn]]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def history(self, session_id: str) -> list[Turn]:
        with self._lock:
            entry = self._sessions.get(session_id)
            if entry is None:
                return []
            if entry[0] <= time.monotonic():
                del self._sessions[session_id]
                return []
            return list(entry[1])

    def add(self, session_id: str, turn: Turn) -> None:
        now = time.monotonic()
        with self._lock:
            entry = self._sessions.pop(session_id, None)
            turns = entry[1] if entry is not None and entry[0] > now else []
            turns = [*turns, turn][-self.turns :]
            self._sessions[session_id] = (now + self.ttl_s, turns)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()


class RedisSessions:
    """Sessions in Redis (a list per session, capped and expiring), shared by every worker."""

    def __init__(
        self,
        url: str,
        turns: int,
        ttl_s: float,
        *,
        prefix: str = "spyglass:chat:",
        timeout_s: float = 0.25,
    ) -> None:
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self.turns = turns
        self.ttl_s = ttl_s
        self._prefix = prefix
        self._lock = threading.Lock()
        self._logged_at = -LOG_EVERY_S

    def history(self, session_id: str) -> list[Turn]:
        try:
            rows = self._redis.lrange(self._prefix + session_id, 0, -1)
        except redis.RedisError as exc:
            self._failed(exc)
            return []
        turns = []
        for row in rows:
            try:
                query, response = orjson.loads(row)
                turns.append(Turn(str(query), str(response)))
            except (orjson.JSONDecodeError, ValueError, TypeError):
                continue
        return turns

    def add(self, session_id: str, turn: Turn) -> None:
        key = self._prefix + session_id
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, orjson.dumps([turn.query, turn.response]))
                pipe.ltrim(key, -self.turns, -1)
                pipe.expire(key, max(1, round(self.ttl_s)))
                pipe.execute()
        except redis.RedisError as exc:
            self._failed(exc)

    def close(self) -> None:
        self._redis.close()

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._logged_at < LOG_EVERY_S:
                return
            self._logged_at = now
        log.warning("chat sessions: Redis failed, conversations start afresh: %s", exc)


def open_sessions(
    redis_url: str | None, *, turns: int, ttl_s: float, max_sessions: int
) -> Sessions:
    """Sessions in Redis when ``redis_url`` is set, else in this worker's memory."""
    if redis_url:
        return RedisSessions(redis_url, turns, ttl_s)
    return MemorySessions(turns, ttl_s, max_sessions)
