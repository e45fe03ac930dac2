"""The client of an OpenAI-compatible chat-completions API, built to survive a bad upstream.

One :class:`LLMClient` per worker holds one ``httpx.AsyncClient`` (a bounded
connection pool), a :class:`~spyglass.llm.breaker.CircuitBreaker` and,
optionally, the query cache. A call:

1. is answered from the cache when the same prompt (model, messages, max_tokens,
   temperature, endpoint) was answered before;
2. fails at once (503, ``Retry-After`` = the open time left) while the breaker is
   open; once ``reset_s`` has passed, one trial call gets a single try;
3. is tried, and retried on 429, 5xx, a broken connection or a per-operation
   timeout, with exponential backoff and full jitter (a ``Retry-After`` on 429/503
   wins), all within one deadline of ``timeout_s`` for the whole call. A retry that
   would end past the deadline is not made;
4. ends as a :class:`Completion`, or as :class:`~spyglass.errors.Unavailable` (503,
   with ``Retry-After``) when the upstream is down, times out or keeps failing.

A call counts once for the breaker, after its retries: a failure when it gives
up, a success when the upstream answered. An upstream 4xx other than 429 is not
retried and proves the upstream is up (a breaker success): 401/403 is a 503
saying the LLM refused the configured key, 400/413/422 is a 422 with the
upstream's message (usually: the prompt is too long), any other is a 503 naming
the status (a wrong base URL or model).

:meth:`LLMClient.stream` retries only until the first delta reaches the caller;
its errors before then raise from the first ``__anext__``, so a route can await
the first delta before it commits to a status. A stream that runs to ``[DONE]``
is cached as its assembled text (without usage, which streams do not carry).

Nothing logged contains the API key or the prompt: only statuses, exception
class names and counts.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx
import orjson

from spyglass.cache import Cache, MemoryCache
from spyglass.errors import ConfigError, Unavailable
from spyglass.llm.breaker import CircuitBreaker
from spyglass.llm.completion import Completion, completion_key, dump_completion, load_completion
from spyglass.llm.response import PATH, Events, Failure, Rejected, check, failure_of
from spyglass.llm.retry import RetryPolicy, client_options
from spyglass.settings import Settings

__all__ = ["LLMClient", "Message", "OnCall"]

log = logging.getLogger(__name__)

#: One chat message, e.g. ``{"role": "user", "content": "..."}``.
Message = Mapping[str, Any]
#: ``on_call(outcome, seconds)`` once per call; outcome is one of ``ok``, ``cached``,
#: ``open`` (breaker), ``rejected`` (upstream 4xx), ``failed``, ``timeout``, ``broken``
#: (a stream cut after its first delta) or ``abandoned`` (a stream closed by its reader).
OnCall = Callable[[str, float], None]
T = TypeVar("T")

_JSON = {"Content-Type": "application/json"}
_SSE = {"Content-Type": "application/json", "Accept": "text/event-stream"}


class LLMClient:
    """Chat completions from one OpenAI-compatible API; see the module docstring.

    ``sleep`` and ``random`` are injectable so tests see the backoff delays without
    waiting them. Close with :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 16,
        retries: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        breaker: CircuitBreaker | None = None,
        cache: Cache | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        on_call: OnCall | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.retries = retries
        self.breaker = breaker or CircuitBreaker(5, 30.0)
        self.policy = RetryPolicy(
            api="LLM API",
            call="LLM call",
            breaker=self.breaker,
            retries=retries,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            random=random,
        )
        self.cache = cache
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._on_call = on_call
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/",
            **client_options(api_key, timeout_s, connect_timeout_s, max_connections),
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, cache: Cache | None = None, on_call: OnCall | None = None
    ) -> LLMClient:
        """The client ``settings`` describe; ``cache`` is used only when ``llm_cache`` is on."""
        if not settings.llm_base_url:
            raise ConfigError("llm_base_url is not set")
        key = settings.llm_api_key
        return cls(
            settings.llm_base_url,
            model=settings.llm_model,
            api_key=key.get_secret_value() if key is not None else None,
            timeout_s=settings.llm_timeout_s,
            connect_timeout_s=settings.llm_connect_timeout_s,
            max_connections=settings.llm_max_connections,
            retries=settings.llm_retries,
            backoff_s=settings.llm_backoff_s,
            backoff_max_s=settings.llm_backoff_max_s,
            breaker=CircuitBreaker(settings.llm_breaker_failures, settings.llm_breaker_reset_s),
            cache=cache if settings.llm_cache else None,
            max_tokens=settings.llm_max_tokens,
            temperature=settings.llm_temperature,
            on_call=on_call,
        )

    async def aclose(self) -> None:
        """Close the connection pool (not the cache, which the caller owns)."""
        await self._http.aclose()

    async def complete(self, messages: Sequence[Message]) -> Completion:
        """The answer to ``messages`` (``[{"role": "user", "content": "..."}]``)."""
        started = time.perf_counter()
        body = self._body(messages, stream=False)
        key = self._key(body)
        if key is not None and (hit := await self._cache_get(key)) is not None:
            self._report("cached", started)
            return hit
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        answer = await self._retrying(lambda: self._post(body), deadline, started)
        self._report("ok", started)
        if key is not None:
            await self._cache_set(key, answer)
        return answer

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        """The answer to ``messages`` as text deltas, in order. Close it (``aclosing``) when
        stopping early. A failure after the first delta raises :class:`Unavailable` from
        the iteration; the caller has already started its answer and must end it."""
        started = time.perf_counter()
        body = self._body(messages, stream=True)
        key = self._key(body)
        if key is not None and (hit := await self._cache_get(key)) is not None:
            self._report("cached", started)
            if hit.text:
                yield hit.text
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        events = await self._retrying(lambda: self._open(body, deadline), deadline, started)
        parts: list[str] = []
        finished = False
        try:
            delta = events.first
            while delta is not None:
                parts.append(delta)
                yield delta
                try:
                    delta = await events.next(deadline)
                except Failure as failure:
                    self.breaker.record_failure()
                    self._report("broken", started)
                    log.warning("LLM stream broke off after %d deltas (%s)", len(parts), failure)
                    raise Unavailable(
                        f"the LLM stream broke off ({failure.reason})",
                        headers={"Retry-After": self.policy.retry_after(None)},
                    ) from failure
            finished = True
        finally:
            await events.aclose()
            if not finished and not events.failed:
                self._report("abandoned", started)
        self._report("ok", started)
        if key is not None:
            answer = Completion("".join(parts), events.model, None, events.finish_reason)
            await self._cache_set(key, answer)

    # one call: breaker, tries, backoff

    async def _retrying(
        self, attempt: Callable[[], Awaitable[T]], deadline: float, started: float
    ) -> T:
        """``attempt()`` until it succeeds, retries run out, or the deadline would pass."""
        policy = self.policy
        try:
            retries = policy.begin()
        except Unavailable:
            self._report("open", started)
            raise
        loop = asyncio.get_running_loop()
        verdict = False
        try:
            retry = 0
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        result = await attempt()
                except Rejected as rejected:
                    self.breaker.record_success()
                    verdict = True
                    self._report("rejected", started)
                    raise rejected.error from None
                except TimeoutError:
                    failure = Failure(f"no answer within {self.timeout_s:g} s", timeout=True)
                    verdict = True
                    raise self._give_up(failure, retry, started) from None
                except Failure as failed:
                    failure = failed
                else:
                    self.breaker.record_success()
                    verdict = True
                    return result
                wait = policy.wait(failure, retry, retries, loop.time(), deadline)
                if wait is None:
                    verdict = True
                    raise self._give_up(failure, retry, started) from failure
                retry += 1
                await self._sleep(wait)
        finally:
            if not verdict:
                self.breaker.release()

    def _give_up(self, failure: Failure, retry: int, started: float) -> Unavailable:
        self._report("timeout" if failure.timeout else "failed", started)
        return self.policy.give_up(failure, retry)

    # one try

    async def _post(self, body: dict[str, Any]) -> Completion:
        try:
            response = await self._http.post(PATH, content=orjson.dumps(body), headers=_JSON)
        except httpx.RequestError as exc:
            raise failure_of(exc) from exc
        await check(response)
        try:
            return Completion.parse(response.content, self.model)
        except ValueError as exc:
            raise Failure("a malformed answer", retryable=False) from exc

    async def _open(self, body: dict[str, Any], deadline: float) -> Events:
        """Send a streaming request and read up to its first delta, so that a failure
        until then can still be retried."""
        request = self._http.build_request("POST", PATH, content=orjson.dumps(body), headers=_SSE)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.RequestError as exc:
            raise failure_of(exc) from exc
        try:
            await check(response)
            events = Events(response, self.model)
            events.first = await events.next(None)  # the caller's deadline covers this
            return events
        except BaseException:
            await response.aclose()
            raise

    # helpers

    def _body(self, messages: Sequence[Message], *, stream: bool) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": stream,
        }

    def _key(self, body: Mapping[str, Any]) -> bytes | None:
        return None if self.cache is None else completion_key(self.base_url, body)

    async def _cache_get(self, key: bytes) -> Completion | None:
        assert self.cache is not None
        data = await _off_loop(self.cache, self.cache.get, key)
        if data is None:
            return None
        try:
            return load_completion(data)
        except ValueError:
            log.warning("LLM cache: an unreadable entry was ignored")
            return None

    async def _cache_set(self, key: bytes, answer: Completion) -> None:
        assert self.cache is not None
        await _off_loop(self.cache, self.cache.set, key, dump_completion(answer))

    def _report(self, outcome: str, started: float) -> None:
        if self._on_call is not None:
            self._on_call(outcome, time.perf_counter() - started)


async def _off_loop(cache: Cache, fn: Callable[..., T], *args: Any) -> T:
    """Call a cache method; in a thread unless it is in memory (Redis blocks)."""
    if isinstance(cache, MemoryCache):
        return fn(*args)
    return await asyncio.to_thread(fn, *args)
