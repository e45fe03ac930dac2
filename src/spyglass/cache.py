"""The query cache: search results and text embeddings, in memory or in Redis.

Search results are keyed by ``(collection, the collection's data version, the
normalised request)`` (:func:`search_key`). Every write to a collection raises
its version, so entries made before the write can no longer be looked up: the
invalidation is exact and needs no TTL. Stale entries are not deleted; they age
out of the memory LRU, or out of Redis by their TTL, which is only a bound on
memory. Text-query embeddings are keyed by encoder and text
(:func:`embedding_key`) and never go stale.

:class:`MemoryCache` (the default) lives in one process; :class:`RedisCache`
is shared by every worker and machine that points at the same Redis. Both
store opaque bytes: :func:`dump_hits` / :func:`load_hits` and
:func:`dump_vector` / :func:`load_vector` turn values into bytes and back.

A cache is an optimisation, never a source of errors: a Redis that is down or
slow makes lookups misses (logged at most once a minute), not failed requests.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import orjson
import redis

from spyglass.stores.base import Hit

__all__ = [
    "Cache",
    "MemoryCache",
    "RedisCache",
    "dump_hits",
    "dump_vector",
    "embedding_key",
    "load_hits",
    "load_vector",
    "open_cache",
    "search_key",
]

log = logging.getLogger(__name__)

#: Goes into every key: change it when the layout of keys or values changes, so a
#: shared Redis never hands one release's values to another that reads them differently.
KEY_FORMAT = 1
#: Seconds between two log lines about Redis errors.
LOG_EVERY_S = 60.0

OnLookup = Callable[[bool], None]


class Cache(Protocol):
    """A bytes-to-bytes cache. Methods are safe to call from several threads and never
    raise for a cache failure: ``get`` answers None and ``set`` does nothing."""

    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None."""
        ...

    def set(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key``; it may be dropped at any time later."""
        ...

    def close(self) -> None:
        """Release connections and memory."""
        ...


class MemoryCache:
    """A least-recently-used cache in this process, bounded by bytes, not entries.

    The size of an entry is the length of its key plus its value (Python's object
    overhead aside), so ``max_bytes`` bounds the memory whatever the size of the
    results. A value larger than ``max_bytes`` is not stored; ``max_bytes=0``
    turns the cache off. ``on_lookup(hit)`` is called on every ``get``.
    """

    def __init__(self, max_bytes: int, on_lookup: OnLookup | None = None) -> None:
        self.max_bytes = max_bytes
        self._on_lookup = on_lookup
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Bytes held now (keys plus values)."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
        if self._on_lookup is not None:
            self._on_lookup(value is not None)
        return value

    def set(self, key: bytes, value: bytes) -> None:
        size = len(key) + len(value)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= len(key) + len(old)
            self._entries[key] = value
            self._size += size
            while self._size > self.max_bytes:
                evicted, evicted_value = self._entries.popitem(last=False)
                self._size -= len(evicted) + len(evicted_value)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0


class RedisCache:
    """A cache in Redis, shared by every process that uses the same ``url``.

    Keys are ``prefix`` + key; values expire after ``ttl_s`` seconds, only to bound
    Redis' memory (correctness comes from the version in the key). Every Redis
    error (down, slow past ``timeout_s``, out of memory) is counted as a miss and
    logged at most once a minute; after one, Redis is left alone for ``retry_s``
    seconds so a dead server costs a request nothing, not a timeout each.
    """

    def __init__(
        self,
        url: str,
        ttl_s: int = 3600,
        prefix: str = "spyglass:cache:",
        *,
        timeout_s: float = 0.25,
        retry_s: float = 1.0,
        on_lookup: OnLookup | None = None,
    ) -> None:
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self.ttl_s = ttl_s
        self._prefix = prefix.encode()
        self._retry_s = retry_s
        self._on_lookup = on_lookup
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._errors = 0
        self._logged_at = -LOG_EVERY_S
        self.errors = 0
        """Redis errors since the start (for tests and debugging)."""

    def get(self, key: bytes) -> bytes | None:
        value: Any = None
        if self._up():
            try:
                value = self._redis.get(self._prefix + key)
            except Exception as exc:  # any Redis failure is a miss
                self._failed(exc)
                value = None
        hit = isinstance(value, bytes)
        if self._on_lookup is not None:
            self._on_lookup(hit)
        return value if hit else None

    def set(self, key: bytes, value: bytes) -> None:
        if not self._up():
            return
        try:
            self._redis.set(self._prefix + key, value, ex=self.ttl_s)
        except Exception as exc:  # a lost write only costs a later miss
            self._failed(exc)

    def close(self) -> None:
        self._redis.close()

    def _up(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self.errors += 1
            self._errors += 1
            self._down_until = now + self._retry_s
            if now - self._logged_at < LOG_EVERY_S:
                return
            errors, self._errors, self._logged_at = self._errors, 0, now
        log.warning("query cache: Redis failed %d time(s), serving misses: %s", errors, exc)


def open_cache(
    redis_url: str | None,
    max_bytes: int,
    *,
    ttl_s: int = 3600,
    on_lookup: OnLookup | None = None,
) -> Cache:
    """A :class:`RedisCache` when ``redis_url`` is set, else a :class:`MemoryCache`."""
    if redis_url:
        return RedisCache(redis_url, ttl_s, on_lookup=on_lookup)
    return MemoryCache(max_bytes, on_lookup=on_lookup)


# keys


def search_key(collection: str, version: int, request: dict[str, Any]) -> bytes:
    """The key of a search result: the collection, its data version and a hash of the
    normalised request as canonical JSON (sorted keys), so the same request written
    with its fields in another order finds the same entry.

    ``request`` should be the request after validation and defaults (e.g.
    ``SearchIn.model_dump(mode="json")``), so ``{"k": 10}`` and ``{}`` meet.
    """
    canonical = orjson.dumps(request, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    digest = hashlib.blake2b(canonical, digest_size=16).hexdigest()
    return f"s{KEY_FORMAT}:{collection}:{version}:{digest}".encode()


def embedding_key(encoder: str, text: str) -> bytes:
    """The key of a text's embedding by ``encoder``.

    Pass a name that changes with the model (e.g. ``"text:" + model path``) when a
    shared Redis may serve servers configured with different models.
    """
    digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return f"e{KEY_FORMAT}:{encoder}:{digest}".encode()


# values


def dump_hits(hits: Sequence[Hit]) -> bytes:
    """Hits as JSON bytes: id, score, payload and text (vectors are not kept)."""
    return orjson.dumps(
        [
            {"id": h.id, "score": float(h.score), "payload": h.payload, "text": h.text}
            | ({"colors": h.colors} if h.colors is not None else {})
            for h in hits
        ]
    )


def load_hits(data: bytes) -> list[Hit]:
    """The hits :func:`dump_hits` wrote; ``ValueError`` if ``data`` is not such a list."""
    try:
        rows = orjson.loads(data)
        return [
            Hit(
                id=r["id"],
                score=r["score"],
                payload=r["payload"],
                text=r["text"],
                colors=None if r.get("colors") is None else [tuple(c) for c in r["colors"]],
            )
            for r in rows
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not cached hits: {exc}") from exc


def dump_vector(vector: np.ndarray) -> bytes:
    """One embedding as raw little-endian float32 bytes."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def load_vector(data: bytes) -> np.ndarray:
    """The embedding :func:`dump_vector` wrote, as a writable float32 array."""
    return np.frombuffer(data, dtype="<f4").astype(np.float32)
