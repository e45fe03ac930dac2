"""Calling an LLM: an OpenAI-compatible chat-completions client with retries, backoff,
a circuit breaker and a cache of identical prompts (used by ``/ask`` and ``/chat``)."""

from __future__ import annotations

from spyglass.llm.breaker import CircuitBreaker
from spyglass.llm.client import LLMClient, Message, OnCall
from spyglass.llm.completion import Completion, Usage, completion_key

__all__ = [
    "CircuitBreaker",
    "Completion",
    "LLMClient",
    "Message",
    "OnCall",
    "Usage",
    "completion_key",
]
