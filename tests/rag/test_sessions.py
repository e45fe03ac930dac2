"""Chat sessions in memory and in a real Redis: bounded, capped, expiring, shared."""

from __future__ import annotations

import time

import pytest

from spyglass.rag.sessions import MemorySessions, RedisSessions, Turn


def test_memory_sessions_keep_the_last_turns_of_the_most_recent_sessions() -> None:
    sessions = MemorySessions(turns=2, ttl_s=60, max_sessions=2)
    for n in range(3):
        sessions.add("a", Turn(f"q{n}", f"r{n}"))
    assert sessions.history("a") == [Turn("q1", "r1"), Turn("q2", "r2")]
    sessions.add("b", Turn("q", "r"))
    sessions.history("a")  # reading does not make a session recent; writing does
    sessions.add("c", Turn("q", "r"))
    assert len(sessions) == 2 and sessions.history("a") == []
    assert sessions.history("unknown") == []


def test_memory_sessions_expire() -> None:
    sessions = MemorySessions(turns=3, ttl_s=0.05, max_sessions=10)
    sessions.add("a", Turn("q", "r"))
    time.sleep(0.1)
    assert sessions.history("a") == []
    sessions.add("a", Turn("q2", "r2"))
    assert sessions.history("a") == [Turn("q2", "r2")]


@pytest.mark.redis
def test_redis_sessions_are_shared_capped_and_expire(redis_url: str) -> None:
    one = RedisSessions(redis_url, turns=2, ttl_s=1, prefix="test:chat:")
    two = RedisSessions(redis_url, turns=2, ttl_s=1, prefix="test:chat:")
    try:
        for n in range(3):
            one.add("s", Turn(f"q{n}", f"r{n} ünïcode"))
        assert two.history("s") == [Turn("q1", "r1 ünïcode"), Turn("q2", "r2 ünïcode")]
        time.sleep(1.5)
        assert two.history("s") == []
    finally:
        one.close()
        two.close()


def test_an_unreachable_redis_starts_conversations_afresh() -> None:
    sessions = RedisSessions("redis://127.0.0.1:1/0", turns=2, ttl_s=60)
    sessions.add("s", Turn("q", "r"))  # no exception: a lost turn, not a failed request
    assert sessions.history("s") == []
    sessions.close()
