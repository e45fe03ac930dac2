"""The query cache: memory LRU, keys, values, and Redis (a real server, started here)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import redis

from spyglass.cache import (
    MemoryCache,
    RedisCache,
    dump_hits,
    dump_vector,
    embedding_key,
    load_hits,
    load_vector,
    open_cache,
    search_key,
)
from spyglass.stores.base import Hit
from tests.e2e.server import free_port

# memory


def test_memory_cache_evicts_least_recently_used_by_bytes() -> None:
    cache = MemoryCache(max_bytes=300)
    for key in (b"a", b"b", b"c"):
        cache.set(key, b"x" * 99)  # 100 bytes each with the key
    assert cache.size == 300
    assert cache.get(b"a") == b"x" * 99  # a is now the most recently used
    cache.set(b"d", b"y" * 149)  # 150 bytes: b and c must go, a stays
    assert cache.get(b"b") is None
    assert cache.get(b"c") is None
    assert cache.get(b"a") == b"x" * 99
    assert cache.get(b"d") == b"y" * 149
    assert cache.size == 250
    assert len(cache) == 2


def test_memory_cache_bounds_bytes_not_entries() -> None:
    cache = MemoryCache(max_bytes=1000)
    for i in range(100):
        cache.set(b"k%03d" % i, b"v")  # 5 bytes each: all 100 fit
    assert len(cache) == 100
    cache.set(b"big", b"z" * 900)
    assert cache.size <= 1000
    assert cache.get(b"big") == b"z" * 900
    assert cache.get(b"k099") == b"v"  # the newest small ones survive
    assert cache.get(b"k000") is None


def test_memory_cache_replaces_and_skips_values_larger_than_the_bound() -> None:
    cache = MemoryCache(max_bytes=100)
    cache.set(b"k", b"1" * 50)
    cache.set(b"k", b"2" * 10)
    assert cache.get(b"k") == b"2" * 10
    assert cache.size == 11
    cache.set(b"huge", b"h" * 200)
    assert cache.get(b"huge") is None
    assert cache.get(b"k") == b"2" * 10


def test_memory_cache_counts_lookups() -> None:
    seen: list[bool] = []
    cache = open_cache(None, 1000, on_lookup=seen.append)
    assert isinstance(cache, MemoryCache)
    cache.get(b"k")
    cache.set(b"k", b"v")
    cache.get(b"k")
    assert seen == [False, True]


def test_memory_cache_from_many_threads_stays_consistent() -> None:
    cache = MemoryCache(max_bytes=5000)
    errors: list[BaseException] = []

    def hammer(worker: int) -> None:
        try:
            for i in range(2000):
                key = b"%d-%d" % (worker, i % 50)
                cache.set(key, key * 3)
                value = cache.get(key)
                assert value is None or value == key * 3
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert 0 < cache.size <= 5000
    assert cache.size == sum(len(k) * 4 for k in cache._entries)


# keys and values


def test_search_key_ignores_key_order_and_follows_version() -> None:
    one = {"text": "red shoes", "k": 10, "filter": {"brand": "x", "size": {"$gte": 3}}}
    two = {"filter": {"size": {"$gte": 3}, "brand": "x"}, "k": 10, "text": "red shoes"}
    assert search_key("shop", 7, one) == search_key("shop", 7, two)
    assert search_key("shop", 7, one) != search_key("shop", 8, one)
    assert search_key("shop", 7, one) != search_key("shop2", 7, one)
    assert search_key("shop", 7, one) != search_key("shop", 7, {**one, "k": 11})
    assert search_key("shop", 7, {"vector": [0.5, 1.0]}) != search_key(
        "shop", 7, {"vector": [0.5, 1.0000001]}
    )


def test_embedding_key_depends_on_encoder_and_text() -> None:
    assert embedding_key("text", "hi") == embedding_key("text", "hi")
    assert embedding_key("text", "hi") != embedding_key("text", "hi ")
    assert embedding_key("text", "hi") != embedding_key("clip", "hi")


def test_hits_round_trip() -> None:
    hits = [
        Hit(id="a", score=np.float32(0.5), payload={"n": [1, 2], "s": "é"}, text="t"),  # type: ignore[arg-type]
        Hit(id="b", score=-1.25, payload={}, text=None, vector=np.ones(3, dtype=np.float32)),
    ]
    back = load_hits(dump_hits(hits))
    assert [(h.id, h.score, h.payload, h.text, h.vector) for h in back] == [
        ("a", 0.5, {"n": [1, 2], "s": "é"}, "t", None),
        ("b", -1.25, {}, None, None),
    ]
    with pytest.raises(ValueError):
        load_hits(b"not json")
    with pytest.raises(ValueError):
        load_hits(b'[{"id": "a"}]')


def test_vector_round_trip() -> None:
    vector = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    back = load_vector(dump_vector(vector))
    assert back.dtype == np.float32
    assert np.array_equal(back, vector)
    back[0] = 1.0  # writable


# Redis


@pytest.mark.redis
def test_redis_cache_stores_with_ttl_and_prefix(redis_url: str) -> None:
    seen: list[bool] = []
    cache = open_cache(redis_url, 1000, ttl_s=120, on_lookup=seen.append)
    assert isinstance(cache, RedisCache)
    key = search_key("c", 1, {"text": "x"})
    assert cache.get(key) is None
    cache.set(key, b"value")
    assert cache.get(key) == b"value"
    assert seen == [False, True]
    raw = redis.Redis.from_url(redis_url)
    try:
        assert raw.get(b"spyglass:cache:" + key) == b"value"
        assert 0 < raw.ttl(b"spyglass:cache:" + key) <= 120
    finally:
        raw.close()
    cache.close()


@pytest.mark.redis
def test_redis_cache_is_shared_between_clients(redis_url: str) -> None:
    one, two = RedisCache(redis_url), RedisCache(redis_url)
    one.set(b"shared", b"42")
    assert two.get(b"shared") == b"42"
    other = RedisCache(redis_url, prefix="elsewhere:")
    assert other.get(b"shared") is None
    for cache in (one, two, other):
        cache.close()


def test_redis_down_means_misses_not_errors(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[bool] = []
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", retry_s=0.0, on_lookup=seen.append)
    for _ in range(3):
        cache.set(b"k", b"v")
        assert cache.get(b"k") is None
    assert seen == [False, False, False]
    assert cache.errors == 6
    warnings = [r for r in caplog.records if "Redis failed" in r.getMessage()]
    assert len(warnings) == 1  # at most once a minute
    cache.close()


def test_redis_down_is_left_alone_for_retry_s() -> None:
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", retry_s=60.0)
    assert cache.get(b"k") is None
    cache.set(b"k", b"v")
    assert cache.get(b"k") is None
    assert cache.errors == 1  # only the first call tried
    cache.close()
