"""Reading the upstream's answers: which failures are worth a retry, and the SSE stream.

:func:`check` sorts a non-2xx status into :class:`Failure` (429 and 5xx: worth
another try, with the ``Retry-After`` of a 429/503) or :class:`Rejected` (any
other 4xx: no retry will change it, and it proves the upstream is up);
:func:`judge` does the same for a response already read, as a synchronous client
has it. An :class:`Upstream` words the errors for the API at hand (the LLM, or the
embeddings API of the ``remote`` encoder).
:class:`Events` reads a ``text/event-stream`` of ``chat.completion.chunk``
objects one ``data:`` line at a time, up to ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
import orjson

from spyglass.errors import InvalidRequest, ProblemError, Unavailable
from spyglass.llm import backoff

__all__ = [
    "LLM",
    "PATH",
    "Events",
    "Failure",
    "Rejected",
    "Upstream",
    "check",
    "failure_of",
    "judge",
]

#: The route under the base URL (``.../v1``).
PATH = "chat/completions"
#: Longest upstream error message repeated in a 422.
MAX_DETAIL = 300


class Failure(Exception):
    """One try failed; ``retryable`` says whether another might not. ``reason`` is safe to
    log and show: a status or an exception class name, never a body."""

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool = True,
        timeout: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.timeout = timeout
        self.retry_after_s = retry_after_s


class Rejected(Exception):
    """The upstream answered with a 4xx that no retry will change; ``error`` is what the
    caller of Spyglass should see."""

    def __init__(self, error: ProblemError) -> None:
        super().__init__(error.detail)
        self.error = error


def failure_of(exc: httpx.RequestError) -> Failure:
    """The :class:`Failure` of a transport error (refused, reset, timed out...)."""
    return Failure(type(exc).__name__, timeout=isinstance(exc, httpx.TimeoutException))


@dataclass(frozen=True)
class Upstream:
    """How the errors of one upstream API read: its ``name`` in sentences, the ``path``
    called under its base URL, the settings of its key and of its URL and model, and the
    request ``field`` a rejected input is blamed on (None: the request as a whole)."""

    name: str
    path: str
    key_setting: str
    url_settings: str
    field: str | None = None


#: The chat-completions API of ``/ask`` and ``/chat``.
LLM = Upstream("the LLM API", PATH, "llm_api_key", "llm_base_url, llm_model")


async def check(response: httpx.Response, upstream: Upstream = LLM) -> None:
    """Nothing for a 2xx; else read the body and raise :class:`Failure` or :class:`Rejected`."""
    status = response.status_code
    if 200 <= status < 300:
        return
    try:
        await response.aread()
    except httpx.RequestError as exc:
        raise Failure(f"HTTP {status}, then {type(exc).__name__}") from exc
    judge(response, upstream)


def judge(response: httpx.Response, upstream: Upstream = LLM) -> None:
    """Like :func:`check`, for a response whose body has been read (a synchronous
    ``httpx.Client`` reads it before returning)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429 or status >= 500:
        retry_after = None
        if status in (429, 503):
            retry_after = backoff.parse_retry_after(response.headers.get("Retry-After"))
        raise Failure(f"HTTP {status}", retry_after_s=retry_after)
    name = upstream.name
    if status in (401, 403):
        detail = f"{name} refused the configured key (HTTP {status}); check {upstream.key_setting}"
        raise Rejected(Unavailable(detail))
    if status in (400, 413, 422):
        message = _error_message(response)[:MAX_DETAIL]
        detail = f"{name} rejected the request (HTTP {status}): {message}"
        raise Rejected(InvalidRequest(detail, field=upstream.field))
    detail = f"{name} answered HTTP {status} to POST {upstream.path}; check {upstream.url_settings}"
    raise Rejected(Unavailable(detail))


def _error_message(response: httpx.Response) -> str:
    """The ``error.message`` of an OpenAI-style error body, else a placeholder."""
    try:
        error = orjson.loads(response.content).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    return message if isinstance(message, str) and message else "no message"


class Events:
    """The text deltas of one streaming response. Remembers the model and the last
    ``finish_reason``; ``failed`` once :meth:`next` has raised."""

    def __init__(self, response: httpx.Response, model: str) -> None:
        self.response = response
        self.model = model
        self.finish_reason: str | None = None
        self.first: str | None = None
        self.failed = False
        self._lines = response.aiter_lines()

    async def next(self, deadline: float | None) -> str | None:
        """The next non-empty delta, or None after ``[DONE]``; :class:`Failure` when the
        stream breaks, passes ``deadline`` (loop time) or says something unreadable."""
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        line = await anext(self._lines)
                except StopAsyncIteration:
                    if self.finish_reason is not None:
                        return None  # no [DONE], but the answer said it was finished
                    raise Failure("the stream ended early") from None
                except TimeoutError:
                    raise Failure("no answer within the timeout", timeout=True) from None
                except httpx.RequestError as exc:
                    raise failure_of(exc) from exc
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event: and id: lines
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return None
                delta = self._delta(payload)
                if delta:
                    return delta
        except Failure:
            self.failed = True
            raise

    async def aclose(self) -> None:
        await self.response.aclose()

    def _delta(self, payload: str) -> str | None:
        try:
            chunk = orjson.loads(payload)
            if "error" in chunk:
                raise Failure("the stream reported an error", retryable=False)
            self.model = chunk.get("model") or self.model
            choices = chunk.get("choices") or []
            if not choices:
                return None  # e.g. a usage-only chunk
            choice = choices[0]
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            content = (choice.get("delta") or {}).get("content")
            return content if isinstance(content, str) else None
        except (orjson.JSONDecodeError, TypeError, AttributeError) as exc:
            raise Failure("a malformed stream chunk", retryable=False) from exc
