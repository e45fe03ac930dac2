"""The ``remote`` encoder: vectors from an OpenAI-compatible embeddings API.

A collection made with ``"encoder": "remote"`` gets its vectors from
``POST {remote_embedding_url}/embeddings`` (OpenAI, or a vLLM, llama.cpp or
Ollama server). Encoders are synchronous and run in worker threads, so this one
holds a synchronous ``httpx.Client`` (a bounded connection pool, shared by the
threads) and follows the policy of the LLM client (:mod:`spyglass.llm.client`)
with the same parts: :mod:`~spyglass.llm.backoff`, the thread-safe
:class:`~spyglass.llm.breaker.CircuitBreaker` and the failure classification of
:mod:`~spyglass.llm.response`. One request:

1. fails at once (503, ``Retry-After`` = the open time left) while the breaker is
   open; once ``reset_s`` has passed, one trial request gets a single try;
2. is tried, and retried on 429, 5xx, a broken connection or a timeout, with
   exponential backoff and full jitter (a ``Retry-After`` on 429/503 wins), all
   within ``timeout_s`` for the request and its retries;
3. ends as unit-length float32 rows in input order (the answer's ``index``), or as
   :class:`~spyglass.errors.Unavailable` (503 with ``Retry-After``) when the
   upstream is down or keeps failing. An upstream 400/413/422 (e.g. a text too long
   for the model) is an :class:`~spyglass.errors.InvalidRequest` naming ``text``;
   401/403 and other 4xx are a 503 naming the setting to check.

A batch goes as requests of at most ``batch`` texts, one after the other; each
counts once for the breaker. The dimension is the ``dim`` given (sent as
``dimensions``), else learnt when the encoder loads from one request of a single
try: an upstream that does not answer it makes the load fail (``ConfigError``),
and the next use tries again.

Nothing is cached here: the engine caches query embeddings under
:attr:`RemoteEncoder.cache_name`, which changes with the URL, model and dimension.
Nothing logged contains the API key or the texts: only statuses, exception class
names and counts.
"""

from __future__ import annotations

import hashlib
import logging
import random as _random
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import orjson

from spyglass.encoders.base import Encoder
from spyglass.errors import ConfigError, InvalidRequest, ProblemError, Unavailable
from spyglass.llm.breaker import CircuitBreaker
from spyglass.llm.response import Failure, Rejected, Upstream, failure_of, judge
from spyglass.llm.retry import RetryPolicy, client_options

if TYPE_CHECKING:
    from spyglass.settings import Settings

__all__ = ["EMBEDDINGS", "RemoteEncoder"]

log = logging.getLogger(__name__)

#: How the embeddings API's errors read, and the field a rejected input is blamed on.
EMBEDDINGS = Upstream(
    "the embeddings API",
    "embeddings",
    "remote_embedding_api_key",
    "remote_embedding_url, remote_embedding_model",
    field="text",
)
#: The text of the request that learns the dimension.
PROBE = "dimension probe"

_JSON = {"Content-Type": "application/json"}


class RemoteEncoder(Encoder):
    """Text vectors from an OpenAI-compatible embeddings API; see the module docstring.

    ``sleep``, ``random`` and ``clock`` are injectable so tests see the backoff delays
    without waiting them. Close with :meth:`close`.
    """

    name = "remote"
    inputs = frozenset({"text"})
    metric = "cosine"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        model: str = "text-embedding-3-small",
        api_key: str | None = None,
        dim: int | None = None,
        batch: int = 64,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 16,
        retries: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not base_url:
            raise ConfigError(
                "the remote encoder needs remote_embedding_url (an OpenAI-compatible"
                " embeddings API, ending in /v1)"
            )
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError("remote_embedding_url must be an http:// or https:// URL")
        if (dim is not None and dim < 1) or batch < 1 or timeout_s <= 0:
            raise ConfigError("the remote encoder needs dim >= 1, batch >= 1, timeout_s > 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.batch = batch
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retries = retries
        self.breaker = breaker or CircuitBreaker(5, 30.0)
        self.policy = RetryPolicy(
            api="embeddings API",
            call="embeddings request",
            breaker=self.breaker,
            retries=retries,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            random=random,
        )
        self._dimensions = dim
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            base_url=self.base_url + "/",
            **client_options(api_key, timeout_s, connect_timeout_s, max_connections),
        )
        # Encoders live as long as their process: unless close() is called, the pool closes
        # when the encoder is collected, or at exit.
        self._closer = weakref.finalize(self, self._http.close)
        try:
            self.dim = dim if dim is not None else self._probe()
        except BaseException:
            self.close()
            raise
        identity = f"{self.base_url}\n{model}\n{self.dim}".encode()
        #: The name the engine's embedding cache keys use: two servers pointing at
        #: different APIs or models never share entries (a digest, so no URL is shown).
        self.cache_name = f"remote:{hashlib.blake2b(identity, digest_size=8).hexdigest()}"

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteEncoder:
        """The encoder of the ``remote_embedding_*`` settings, with the retries, backoff,
        breaker, pool and connect timeout of the ``llm_*`` ones."""
        key = settings.remote_embedding_api_key
        return cls(
            settings.remote_embedding_url,
            model=settings.remote_embedding_model,
            api_key=key.get_secret_value() if key is not None else None,
            dim=settings.remote_embedding_dim,
            batch=settings.remote_embedding_batch,
            timeout_s=settings.remote_embedding_timeout_s,
            connect_timeout_s=settings.llm_connect_timeout_s,
            max_connections=settings.llm_max_connections,
            retries=settings.llm_retries,
            backoff_s=settings.llm_backoff_s,
            backoff_max_s=settings.llm_backoff_max_s,
            breaker=CircuitBreaker(settings.llm_breaker_failures, settings.llm_breaker_reset_s),
        )

    def close(self) -> None:
        """Close the connection pool (also done when the encoder is collected)."""
        self._closer()

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        """Unit-length vectors of ``batch``, shape ``(len(batch), dim)``, in input order."""
        if isinstance(batch, str | bytes):
            raise InvalidRequest("texts must be a list of strings, not a single string")
        texts = list(batch)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidRequest(f"text {i} is {type(text).__name__}, not a string")
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        step = self.batch
        return np.concatenate(
            [self._call(texts[i : i + step], self.retries) for i in range(0, len(texts), step)]
        )

    # one request: breaker, tries, backoff

    def _probe(self) -> int:
        try:
            return int(self._call([PROBE], 0).shape[1])
        except ProblemError as exc:
            raise ConfigError(
                f"the remote encoder could not learn its dimension: {exc.detail}"
                " (setting remote_embedding_dim skips this request)"
            ) from exc

    def _call(self, texts: list[str], retries: int) -> np.ndarray:
        """Rows for ``texts`` from one request, retried until it succeeds, ``retries`` run
        out or the deadline would pass."""
        retries = min(retries, self.policy.begin())
        deadline = self._clock() + self.timeout_s
        body = self._body(texts)
        verdict = False
        try:
            retry = 0
            while True:
                try:
                    rows = self._post(body, len(texts), deadline)
                except Rejected as rejected:
                    self.breaker.record_success()
                    verdict = True
                    raise rejected.error from None
                except Failure as failed:
                    failure = failed
                else:
                    self.breaker.record_success()
                    verdict = True
                    return rows
                wait = self.policy.wait(failure, retry, retries, self._clock(), deadline)
                if wait is None:
                    verdict = True
                    raise self.policy.give_up(failure, retry) from failure
                retry += 1
                self._sleep(wait)
        finally:
            if not verdict:
                self.breaker.release()

    # one try

    def _post(self, body: bytes, count: int, deadline: float) -> np.ndarray:
        left = deadline - self._clock()
        if left <= 0:
            raise Failure(f"no answer within {self.timeout_s:g} s", timeout=True, retryable=False)
        timeout = httpx.Timeout(left, connect=min(self.connect_timeout_s, left))
        try:
            response = self._http.post(
                EMBEDDINGS.path, content=body, headers=_JSON, timeout=timeout
            )
        except httpx.RequestError as exc:
            raise failure_of(exc) from exc
        judge(response, EMBEDDINGS)
        return self._rows(response.content, count)

    def _body(self, texts: list[str]) -> bytes:
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self._dimensions is not None:
            body["dimensions"] = self._dimensions
        return orjson.dumps(body)

    def _rows(self, content: bytes, count: int) -> np.ndarray:
        """The unit rows of an embeddings answer, ordered by ``index``."""
        try:
            data = orjson.loads(content)["data"]
            data = sorted(data, key=lambda row: row["index"])
            if [row["index"] for row in data] != list(range(count)):
                raise ValueError("the indexes are not those of the inputs")
            rows = np.asarray([row["embedding"] for row in data], dtype=np.float32)
            if rows.ndim != 2 or not rows.shape[1] or not np.isfinite(rows).all():
                raise ValueError("not one finite vector per input")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise Failure("a malformed answer", retryable=False) from exc
        expected = self.dim  # 0 while probing
        if expected and rows.shape[1] != expected:
            raise Rejected(
                Unavailable(
                    f"the embeddings API answered {rows.shape[1]}-d vectors, not {expected}-d;"
                    " check remote_embedding_model, remote_embedding_dim"
                )
            )
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        unit: np.ndarray = (rows / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)
        return unit
