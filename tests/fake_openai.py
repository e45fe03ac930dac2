"""A real OpenAI-compatible chat-completions server for tests, scripted request by request.

It listens on 127.0.0.1 (a free port, a background thread) and speaks enough of
the protocol for Spyglass's LLM client, its ``remote`` encoder and the ``openai``
package: ``POST /v1/chat/completions`` (a ``chat.completion`` object, or with
``"stream": true`` a ``text/event-stream`` of ``chat.completion.chunk`` deltas
ending in ``data: [DONE]``), ``POST /v1/embeddings`` and ``GET /v1/models``.

Each chat-completions or embeddings request takes the next scripted behaviour
(:meth:`FakeOpenAI.script`): :class:`Answer`, :class:`Status` (e.g. a 429 with
``Retry-After``, a 500), :class:`Hang` (no answer for a while, optionally after
some streamed deltas) or :class:`Cut` (the connection closed mid-answer). With
nothing scripted a chat completion answers ``echo: <the last user message>``, and
an embeddings request answers :func:`embedding` of each input (``dimensions`` of
them when the request asks, else :data:`EMBEDDING_DIM`), listed last input first:
the protocol orders inputs by ``index``, so a client must read it. Every request is
recorded in :attr:`FakeOpenAI.requests` (method, path, headers, JSON body).

Use the ``fake_openai`` fixture (import ``fake_openai_fixture`` into a conftest or test
module), or ``with running() as fake:``::

    fake_openai.script(Status(429, retry_after="1"), Answer("Paris"))
    ... call fake_openai.base_url (ends in /v1) ...
    assert len(fake_openai.completions) == 2
    assert fake_openai.completions[0].headers["authorization"] == "Bearer sk-test"
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = [
    "EMBEDDING_DIM",
    "MODEL",
    "Answer",
    "Cut",
    "FakeOpenAI",
    "Hang",
    "Received",
    "Status",
    "echo",
    "embedding",
    "fake_openai_fixture",
    "running",
]

MODEL = "fake-gpt"
#: Length of the fake's embeddings when a request does not ask for ``dimensions``.
EMBEDDING_DIM = 24


@dataclass(frozen=True)
class Answer:
    """Answer with ``text`` (None: the default echo), streamed one word per chunk."""

    text: str | None = None
    finish_reason: str = "stop"
    model: str = MODEL


@dataclass(frozen=True)
class Status:
    """Answer with an OpenAI-style error body and this status (and ``Retry-After``)."""

    status: int
    retry_after: str | None = None
    message: str = "scripted error"


@dataclass(frozen=True)
class Hang:
    """Say nothing for ``seconds`` (cut short when the server stops), then close. With
    ``after`` on a streaming request: first send that many deltas of the default echo."""

    seconds: float = 30.0
    after: int | None = None


@dataclass(frozen=True)
class Cut:
    """Close the connection: before any answer, or on a streaming request after ``after``
    deltas of the default echo (without the end of the chunked body)."""

    after: int = 0


Behaviour = Answer | Status | Hang | Cut


@dataclass(frozen=True)
class Received:
    """One request as the server got it; header names are lower case."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = (self.json or {}).get("messages", [])
        return messages


def echo(messages: list[dict[str, Any]]) -> str:
    """The default answer: ``echo: `` and the content of the last user message."""
    users = [m for m in messages if m.get("role") == "user"]
    return f"echo: {users[-1].get('content', '') if users else ''}"


def embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """The default embedding of ``text``: ``dim`` numbers in [-1, 1) drawn from a hash of
    it, the same on every run (not normalised, as some servers' are not)."""
    numbers: list[float] = []
    block = 0
    while len(numbers) < dim:
        digest = hashlib.blake2b(f"{block}:{text}".encode(), digest_size=64).digest()
        numbers += [n / 2**31 for n in struct.unpack("<16i", digest)]
        block += 1
    return numbers[:dim]


@dataclass
class FakeOpenAI:
    """The running server: where it is, what to do next, what it received."""

    base_url: str
    requests: list[Received] = field(default_factory=list)
    _script: deque[Behaviour] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next chat-completions or embeddings requests, one each,
        in order."""
        with self._lock:
            self._script.extend(behaviours)

    @property
    def completions(self) -> list[Received]:
        """The chat-completions requests received so far (each try counts)."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def embeddings(self) -> list[Received]:
        """The embeddings requests received so far (each try counts)."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/embeddings")]

    @property
    def pending(self) -> int:
        """Scripted behaviours not used yet."""
        with self._lock:
            return len(self._script)

    def _receive(self, request: Received) -> Behaviour:
        with self._lock:
            self.requests.append(request)
            return self._script.popleft() if self._script else Answer()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's pool is exercised
    timeout = 10  # an idle kept-alive connection frees its thread after this
    disable_nagle_algorithm = True  # headers and body go in separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.fake._receive(self._received(None))
        if self.path.rstrip("/") == "/v1/models":
            body = {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0}]}
            self._json(200, body)
        else:
            self._json(404, _error("no such route", "invalid_request_error"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        behaviour = self.server.fake._receive(self._received(body))
        if self.path == "/v1/embeddings":
            wrong = _embeddings_error(body)
        elif self.path == "/v1/chat/completions":
            wrong = None
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                wrong = "'messages' is required"
        else:
            self._json(404, _error("no such route", "invalid_request_error"))
            return
        if wrong is not None or not isinstance(body, dict):
            self._json(400, _error(wrong or "a JSON object is required", "invalid_request_error"))
            return
        try:
            self._behave(behaviour, body)
        except OSError:  # the client went away (e.g. it timed out): nothing to answer
            self.close_connection = True

    def _behave(self, behaviour: Behaviour, body: dict[str, Any]) -> None:
        if isinstance(behaviour, Status):
            extra = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else {}
            kind = "rate_limit_error" if behaviour.status == 429 else "server_error"
            self._json(behaviour.status, _error(behaviour.message, kind), extra)
        elif self.path == "/v1/embeddings":
            if isinstance(behaviour, Answer):
                self._json(200, _embeddings(body))
            elif isinstance(behaviour, Hang):
                self.server.fake._stopping.wait(behaviour.seconds)
                self.close_connection = True
            else:
                self.close_connection = True
        else:
            self._chat(behaviour, body)

    def _chat(self, behaviour: Answer | Hang | Cut, body: dict[str, Any]) -> None:
        stream = bool(body.get("stream"))
        default = echo(body["messages"])
        if isinstance(behaviour, Answer):
            text = default if behaviour.text is None else behaviour.text
            if stream:
                self._stream(text, behaviour.model, behaviour.finish_reason)
            else:
                self._json(200, _completion(text, body, behaviour))
        elif isinstance(behaviour, Hang):
            if stream and behaviour.after is not None:
                self._stream(default, MODEL, "stop", stop_after=behaviour.after)
            self.server.fake._stopping.wait(behaviour.seconds)
            self.close_connection = True
        else:
            if stream and behaviour.after:
                self._stream(default, MODEL, "stop", stop_after=behaviour.after)
            self.close_connection = True

    def _stream(
        self, text: str, model: str, finish_reason: str, stop_after: int | None = None
    ) -> None:
        """Send ``text`` as SSE chunks; with ``stop_after``, only that many content deltas
        and no end (the caller hangs or closes)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        words = _words(text)
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": w} for w in words]
        if stop_after is not None:
            deltas = deltas[: 1 + stop_after]
        for delta in deltas:
            self._chunk(_event(_chunk(model, delta, None)))
        if stop_after is not None:
            return
        self._chunk(_event(_chunk(model, {}, finish_reason)))
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _received(self, body: Any) -> Received:
        headers = {k.lower(): v for k, v in self.headers.items()}
        return Received(self.command, self.path, headers, body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAI


def _words(text: str) -> list[str]:
    """``text`` in pieces that join back to it: each word with the space before it."""
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])] if text else []


def _tokens(text: str) -> int:
    return len(text.split())


def _completion(text: str, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
    prompt = sum(_tokens(str(m.get("content", ""))) for m in body["messages"])
    completion = _tokens(text)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _embeddings_error(body: Any) -> str | None:
    """Why an embeddings request body is malformed, or None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return "'input' must be a string or a non-empty list of strings"
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
    ):
        return "'dimensions' must be a positive integer"
    return None


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    dim = body.get("dimensions") or EMBEDDING_DIM
    tokens = sum(_tokens(t) for t in texts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": embedding(text, dim)}
            for i, text in reversed(list(enumerate(texts)))
        ],
        "model": body.get("model") or MODEL,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


@contextmanager
def running() -> Iterator[FakeOpenAI]:
    """Start the server; stop it (and end any hang) on exit."""
    server = _Server(("127.0.0.1", 0), _Handler)
    host, port = server.server_address[:2]
    fake = FakeOpenAI(base_url=f"http://{host!s}:{port}/v1")
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield fake
    finally:
        fake._stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(name="fake_openai")
def fake_openai_fixture() -> Iterator[FakeOpenAI]:
    """``fake_openai``: a running fake OpenAI server for one test; see the module docstring.

    Registered under another name than the function's, so that a module importing it
    (``from tests.fake_openai import fake_openai_fixture``) can name its parameters
    ``fake_openai`` without shadowing the import."""
    with running() as fake:
        yield fake
