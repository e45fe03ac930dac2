"""What an LLM call returns, and how it is keyed and stored in the query cache.

A cache key (:func:`completion_key`) is a hash of everything that decides the
answer: the endpoint, model, messages, ``max_tokens`` and ``temperature`` (not
``stream``, so a streamed answer and a plain one share entries). ``KEY_FORMAT``
goes into every key so a shared Redis never hands one release's values to
another that reads them differently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

__all__ = ["Completion", "Usage", "completion_key", "dump_completion", "load_completion"]

KEY_FORMAT = 1


@dataclass(frozen=True)
class Usage:
    """Tokens the upstream counted for one answer."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def parse(cls, data: Any) -> Usage | None:
        """The ``usage`` object of a chat completion, or None when absent or unreadable."""
        if not isinstance(data, dict):
            return None
        try:
            prompt = int(data.get("prompt_tokens") or 0)
            completion = int(data.get("completion_tokens") or 0)
            total = int(data.get("total_tokens") or prompt + completion)
        except (TypeError, ValueError):
            return None
        return cls(prompt, completion, total)


@dataclass(frozen=True)
class Completion:
    """An answer: its text, the model that wrote it, token usage (None when unknown, e.g.
    cached from a stream), why it stopped (``stop``, ``length``...) and whether it came
    from the cache."""

    text: str
    model: str
    usage: Usage | None
    finish_reason: str | None
    cached: bool = False

    @classmethod
    def parse(cls, content: bytes, model: str) -> Completion:
        """A ``chat.completion`` JSON body (``model`` if it names none); ``ValueError`` if
        it is not one."""
        try:
            data = orjson.loads(content)
            choice = data["choices"][0]
            return cls(
                text=choice["message"].get("content") or "",
                model=data.get("model") or model,
                usage=Usage.parse(data.get("usage")),
                finish_reason=choice.get("finish_reason"),
            )
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a chat completion: {type(exc).__name__}") from exc


def completion_key(endpoint: str, body: Mapping[str, Any]) -> bytes:
    """The cache key of a chat-completions request ``body`` sent to ``endpoint``."""
    decisive = {k: v for k, v in body.items() if k != "stream"}
    canonical = orjson.dumps({"endpoint": endpoint, "body": decisive}, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.blake2b(canonical, digest_size=16).hexdigest()
    return f"llm{KEY_FORMAT}:{body.get('model', '')}:{digest}".encode()


def dump_completion(answer: Completion) -> bytes:
    """``answer`` as JSON bytes for the cache (``cached`` is not kept)."""
    row = asdict(answer)
    del row["cached"]
    return orjson.dumps(row)


def load_completion(data: bytes) -> Completion:
    """The answer :func:`dump_completion` wrote, marked ``cached``; ``ValueError`` if
    ``data`` is not one."""
    try:
        row = orjson.loads(data)
        usage = Usage.parse(row["usage"])
        return Completion(row["text"], row["model"], usage, row["finish_reason"], cached=True)
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not a cached completion: {type(exc).__name__}") from exc
