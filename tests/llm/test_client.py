"""The LLM client against a real (fake) OpenAI server over real HTTP: answers, streams,
retries, timeouts, the circuit breaker and the cache."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from spyglass import problems
from spyglass.cache import MemoryCache, RedisCache
from spyglass.errors import ConfigError, InvalidRequest, ProblemError, Unavailable
from spyglass.llm import CircuitBreaker, Completion, LLMClient, Usage, completion_key
from spyglass.llm.backoff import delay, parse_retry_after
from spyglass.settings import Settings
from tests.e2e.server import free_port
from tests.fake_openai import (
    MODEL,
    Answer,
    Cut,
    FakeOpenAI,
    Hang,
    Status,
    fake_openai_fixture,  # noqa: F401
)

KEY = "sk-test-0123456789"
QUESTION = "What is the capital of France?"
MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": QUESTION},
]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Calls:
    """What the client reports: backoff sleeps (not waited) and call outcomes."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.outcomes: list[str] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)

    def on_call(self, outcome: str, seconds: float) -> None:
        assert seconds >= 0
        self.outcomes.append(outcome)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
async def make(fake_openai: FakeOpenAI, calls: Calls) -> AsyncIterator[Callable[..., LLMClient]]:
    """Build clients on the fake server with small limits; closed after the test."""
    made: list[LLMClient] = []

    def build(**overrides: Any) -> LLMClient:
        options: dict[str, Any] = {
            "model": MODEL,
            "api_key": KEY,
            "timeout_s": 10.0,
            "connect_timeout_s": 2.0,
            "retries": 2,
            "backoff_s": 0.01,
            "backoff_max_s": 0.05,
            "breaker": CircuitBreaker(5, 60.0),
            "sleep": calls.sleep,
            "on_call": calls.on_call,
        }
        options.update(overrides)
        client = LLMClient(options.pop("base_url", fake_openai.base_url), **options)
        made.append(client)
        return client

    yield build
    for client in made:
        await client.aclose()


async def collect(client: LLMClient, messages: list[dict[str, Any]] = MESSAGES) -> list[str]:
    async with aclosing(client.stream(messages)) as deltas:
        return [delta async for delta in deltas]


# answers


async def test_completion_sends_prompt_and_key_and_reads_usage(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI, calls: Calls
) -> None:
    answer = await make(max_tokens=64, temperature=0.5).complete(MESSAGES)

    assert answer == Completion(f"echo: {QUESTION}", MODEL, Usage(8, 7, 15), "stop", cached=False)
    (request,) = fake_openai.completions
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.json == {
        "model": MODEL,
        "messages": MESSAGES,
        "max_tokens": 64,
        "temperature": 0.5,
        "stream": False,
    }
    assert calls.outcomes == ["ok"]


async def test_stream_yields_the_deltas_in_order(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI, calls: Calls
) -> None:
    fake_openai.script(Answer("the quick brown fox"))

    deltas = await collect(make())

    assert deltas == ["the", " quick", " brown", " fox"]
    (request,) = fake_openai.completions
    assert request.json["stream"] is True
    assert request.headers["accept"] == "text/event-stream"
    assert calls.outcomes == ["ok"]


async def test_without_a_key_no_authorization_is_sent(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI
) -> None:
    await make(api_key=None).complete(MESSAGES)
    assert "authorization" not in fake_openai.completions[0].headers


# retries


async def test_429_is_retried_after_its_retry_after(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI, calls: Calls
) -> None:
    fake_openai.script(Status(429, retry_after="0.03"), Status(429, retry_after="7"), Answer("ok"))

    answer = await make().complete(MESSAGES)

    assert answer.text == "ok"
    assert len(fake_openai.completions) == 3
    assert calls.sleeps == [0.03, 0.05]  # as asked, then capped at backoff_max_s
    assert calls.outcomes == ["ok"]


async def test_5xx_retried_then_a_503_with_retry_after(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI, calls: Calls
) -> None:
    fake_openai.script(Status(500), Status(502), Status(500), Answer("too late"))
    client = make(retries=2, backoff_s=0.5, backoff_max_s=3.0)

    with pytest.raises(Unavailable) as caught:
        await client.complete(MESSAGES)

    assert len(fake_openai.completions) == 3
    assert len(calls.sleeps) == 2
    assert all(0 <= s <= 3.0 for s in calls.sleeps)
    assert "HTTP 500" in caught.value.detail
    assert caught.value.headers["Retry-After"] == "2"  # the next backoff ceiling, 0.5 * 2**2
    assert calls.outcomes == ["failed"]
    assert fake_openai.pending == 1


async def test_the_503_renders_as_problem_json_with_retry_after(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Status(503, retry_after="4"))
    client = make(retries=0)
    app = FastAPI()
    problems.install(app)

    @app.post("/ask")
    async def ask() -> dict[str, str]:
        return {"answer": (await client.complete(MESSAGES)).text}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://spyglass"
    ) as http:
        response = await http.post("/ask")

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "4"
    assert "HTTP 503" in response.json()["detail"]


async def test_a_dropped_connection_is_retried(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Cut(), Answer("second try"))
    assert (await make().complete(MESSAGES)).text == "second try"
    assert len(fake_openai.completions) == 2


async def test_a_refused_connection_is_a_503(make: Callable[..., LLMClient], calls: Calls) -> None:
    client = make(base_url=f"http://127.0.0.1:{free_port()}/v1", retries=1)
    with pytest.raises(Unavailable) as caught:
        await client.complete(MESSAGES)
    assert "ConnectError" in caught.value.detail
    assert len(calls.sleeps) == 1


async def test_a_hung_upstream_times_out_as_a_503(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI, calls: Calls
) -> None:
    fake_openai.script(Hang(60))

    with pytest.raises(Unavailable) as caught:
        await make(timeout_s=0.3).complete(MESSAGES)

    assert "within 0.3 s" in caught.value.detail
    assert caught.value.headers["Retry-After"]
    assert len(fake_openai.completions) == 1  # no time was left for a retry
    assert calls.outcomes == ["timeout"]


async def test_a_retry_that_would_end_past_the_deadline_is_not_made(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Status(429, retry_after="30"))
    client = make(timeout_s=5.0, backoff_max_s=20.0)
    with pytest.raises(Unavailable) as caught:
        await client.complete(MESSAGES)
    assert len(fake_openai.completions) == 1
    assert caught.value.headers["Retry-After"] == "30"


# upstream 4xx


async def test_a_refused_key_is_a_503_that_names_no_key(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI, calls: Calls
) -> None:
    fake_openai.script(Status(401, message=f"Incorrect API key provided: {KEY}"))
    client = make()

    with pytest.raises(Unavailable) as caught:
        await client.complete(MESSAGES)

    assert "refused the configured key" in caught.value.detail
    assert KEY not in str(caught.value.to_problem())
    assert len(fake_openai.completions) == 1
    assert client.breaker.consecutive_failures == 0
    assert calls.outcomes == ["rejected"]


async def test_a_bad_request_is_a_422_with_the_upstream_message(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Status(400, message="maximum context length is 8192 tokens"))
    with pytest.raises(InvalidRequest) as caught:
        await make().complete(MESSAGES)
    assert caught.value.status == 422
    assert "maximum context length" in caught.value.detail
    assert len(fake_openai.completions) == 1


# streams


async def test_a_stream_cut_before_its_first_delta_is_retried(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Cut(), Status(500), Answer("finally here"))
    assert "".join(await collect(make())) == "finally here"
    assert len(fake_openai.completions) == 3


async def test_a_stream_cut_after_its_first_delta_is_not_retried(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI, calls: Calls
) -> None:
    fake_openai.script(Cut(after=2))
    received: list[str] = []
    client = make()

    with pytest.raises(Unavailable) as caught:
        async with aclosing(client.stream(MESSAGES)) as deltas:
            async for delta in deltas:
                received.append(delta)

    assert received == ["echo:", " What"]
    assert "broke off" in caught.value.detail
    assert len(fake_openai.completions) == 1
    assert calls.outcomes == ["broken"]
    assert client.breaker.consecutive_failures == 1


async def test_a_stream_that_stalls_after_its_first_delta_times_out(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Hang(60, after=1))
    received: list[str] = []
    with pytest.raises(Unavailable):
        async with aclosing(make(timeout_s=0.3).stream(MESSAGES)) as deltas:
            async for delta in deltas:
                received.append(delta)
    assert received == ["echo:"]


async def test_a_stream_closed_early_is_abandoned(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI, calls: Calls
) -> None:
    async with aclosing(make().stream(MESSAGES)) as deltas:
        async for _ in deltas:
            break
    assert calls.outcomes == ["abandoned"]


# circuit breaker


async def test_the_breaker_opens_and_then_fails_fast_without_calling(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI, calls: Calls
) -> None:
    clock = Clock()
    client = make(retries=1, breaker=CircuitBreaker(2, 30.0, clock=clock))
    fake_openai.script(*[Status(500)] * 4)
    for _ in range(2):
        with pytest.raises(Unavailable):
            await client.complete(MESSAGES)
    assert client.breaker.state == "open"
    assert len(fake_openai.completions) == 4

    clock.now += 12.5
    with pytest.raises(Unavailable) as caught:
        await client.complete(MESSAGES)
    with pytest.raises(Unavailable):
        await collect(client)

    assert len(fake_openai.completions) == 4  # the server was not contacted
    assert "circuit breaker" in caught.value.detail
    assert caught.value.headers["Retry-After"] == "18"  # 17.5 s left, rounded up
    assert calls.outcomes == ["failed", "failed", "open", "open"]


async def test_a_successful_trial_closes_the_breaker(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI
) -> None:
    clock = Clock()
    client = make(retries=0, breaker=CircuitBreaker(1, 30.0, clock=clock))
    fake_openai.script(Status(500))
    with pytest.raises(Unavailable):
        await client.complete(MESSAGES)
    assert client.breaker.state == "open"

    clock.now += 30
    assert client.breaker.state == "half-open"
    fake_openai.script(Answer("back"))

    assert (await client.complete(MESSAGES)).text == "back"
    assert client.breaker.state == "closed"
    assert len(fake_openai.completions) == 2


async def test_a_failed_trial_is_tried_once_and_reopens(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI
) -> None:
    clock = Clock()
    client = make(retries=3, breaker=CircuitBreaker(1, 30.0, clock=clock), backoff_max_s=0.01)
    fake_openai.script(*[Status(500)] * 4)
    with pytest.raises(Unavailable):
        await client.complete(MESSAGES)
    assert len(fake_openai.completions) == 4

    clock.now += 30
    fake_openai.script(Status(500), Answer("not reached"))
    with pytest.raises(Unavailable) as caught:
        await client.complete(MESSAGES)

    assert len(fake_openai.completions) == 5  # one trial, no retries
    assert client.breaker.state == "open"
    assert caught.value.headers["Retry-After"] == "30"


# cache


async def test_identical_prompts_are_answered_from_memory(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI, calls: Calls
) -> None:
    client = make(cache=MemoryCache(1 << 20))
    first = await client.complete(MESSAGES)
    second = await client.complete(MESSAGES)
    other = await client.complete([{"role": "user", "content": "Something else?"}])

    assert not first.cached
    assert second.cached
    assert (second.text, second.usage, second.model) == (first.text, first.usage, first.model)
    assert other.text == "echo: Something else?"
    assert len(fake_openai.completions) == 2
    assert calls.outcomes == ["ok", "cached", "ok"]

    assert "".join(await collect(client)) == first.text  # a stream reads the same entry
    assert len(fake_openai.completions) == 2


async def test_a_finished_stream_is_cached_as_its_text(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI
) -> None:
    client = make(cache=MemoryCache(1 << 20))
    streamed = "".join(await collect(client))
    answer = await client.complete(MESSAGES)
    assert (answer.text, answer.cached, answer.usage) == (streamed, True, None)
    assert len(fake_openai.completions) == 1


async def test_a_broken_stream_is_not_cached(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI
) -> None:
    client = make(cache=MemoryCache(1 << 20))
    fake_openai.script(Cut(after=1))
    with pytest.raises(Unavailable):
        await collect(client)
    assert not (await client.complete(MESSAGES)).cached


async def test_failures_are_not_cached(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI
) -> None:
    client = make(cache=MemoryCache(1 << 20), retries=0)
    fake_openai.script(Status(500))
    with pytest.raises(Unavailable):
        await client.complete(MESSAGES)
    assert not (await client.complete(MESSAGES)).cached


@pytest.mark.redis
async def test_workers_share_answers_through_redis(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI, redis_url: str
) -> None:
    prefix = f"test-llm-{uuid.uuid4().hex}:"
    caches = [RedisCache(redis_url, prefix=prefix) for _ in range(2)]
    try:
        one, two = (make(cache=cache) for cache in caches)
        first = await one.complete(MESSAGES)
        second = await two.complete(MESSAGES)
    finally:
        for cache in caches:
            cache.close()
    assert (first.cached, second.cached) == (False, True)
    assert second.text == first.text
    assert second.usage == first.usage
    assert len(fake_openai.completions) == 1


def test_cache_keys_hash_what_decides_the_answer() -> None:
    body = {"model": "m", "messages": MESSAGES, "max_tokens": 5, "temperature": 0.0}
    key = completion_key("http://llm/v1", body)
    assert key.startswith(b"llm1:m:")
    assert QUESTION.encode() not in key
    assert key == completion_key("http://llm/v1", {**body, "stream": True})
    for changed in ({"temperature": 0.7}, {"max_tokens": 6}, {"model": "n"}):
        assert completion_key("http://llm/v1", {**body, **changed}) != key
    assert completion_key("http://other/v1", body) != key


# settings, logs, backoff


async def test_built_from_settings(fake_openai: FakeOpenAI, tmp_path: Any) -> None:
    settings = Settings(
        data_dir=tmp_path,
        llm_base_url=fake_openai.base_url,
        llm_api_key="sk-from-settings",
        llm_model="configured-model",
        llm_max_tokens=33,
        llm_cache=False,
    )
    client = LLMClient.from_settings(settings, cache=MemoryCache(1 << 20))
    try:
        await client.complete(MESSAGES)
        await client.complete(MESSAGES)
    finally:
        await client.aclose()
    assert client.cache is None  # llm_cache is off
    assert len(fake_openai.completions) == 2
    request = fake_openai.completions[0]
    assert request.headers["authorization"] == "Bearer sk-from-settings"
    assert (request.json["model"], request.json["max_tokens"]) == ("configured-model", 33)

    with pytest.raises(ConfigError):
        LLMClient.from_settings(Settings(data_dir=tmp_path))


async def test_logs_hold_neither_the_key_nor_the_prompt(
    make: Callable[..., LLMClient], fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_openai.script(Status(500), Cut(), Status(429, retry_after="0"), Status(500))
    with pytest.raises(ProblemError):
        await make(retries=3).complete(MESSAGES)
    await collect(make())
    assert "retry 1 of 3" in caplog.text
    assert KEY not in caplog.text
    assert QUESTION not in caplog.text


def test_backoff_is_jittered_doubling_or_what_the_upstream_asked() -> None:
    assert delay(0.5, 8.0, 0, random=lambda: 1.0) == 0.5
    assert delay(0.5, 8.0, 3, random=lambda: 0.5) == 2.0
    assert delay(0.5, 8.0, 10, random=lambda: 1.0) == 8.0
    assert delay(0.5, 8.0, 0, random=lambda: 0.0) == 0.0
    assert delay(0.5, 8.0, 0, retry_after_s=3.0, random=lambda: 1.0) == 3.0
    assert delay(0.5, 8.0, 0, retry_after_s=60.0, random=lambda: 1.0) == 8.0
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# the fake itself, through the official SDK


async def test_the_fake_speaks_the_protocol_of_the_openai_sdk(fake_openai: FakeOpenAI) -> None:
    messages: list[Any] = list(MESSAGES)
    async with openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key=KEY, max_retries=0) as sdk:
        models = await sdk.models.list()
        answer = await sdk.chat.completions.create(model=MODEL, messages=messages)
        chunks = await sdk.chat.completions.create(
            model=MODEL,
            messages=messages,
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in chunks])
    assert [m.id for m in models.data] == [MODEL]
    assert answer.choices[0].message.content == f"echo: {QUESTION}"
    assert answer.usage is not None and answer.usage.total_tokens == 15
    assert text == f"echo: {QUESTION}"
