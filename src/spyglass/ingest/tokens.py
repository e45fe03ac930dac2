"""Counting tokens the way a collection's encoder counts them, to size chunks.

A chunk is useful only if the encoder sees all of it: a text encoder keeps a
fixed number of tokens per input (all-MiniLM-L6-v2: 256, ``[CLS]`` and ``[SEP]``
included) and silently drops the rest. So the chunker counts with the encoder's
own tokenizer rather than characters or words, and :class:`Tokens` is the small
part of an encoder it needs: where each token of a text sits, and how many
tokens the encoder adds around every input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from spyglass.encoders.base import Encoder
from spyglass.errors import ConfigError

__all__ = ["Tokenizing", "Tokens", "tokens_for"]


@runtime_checkable
class Tokenizing(Protocol):
    """An encoder that can say how it tokenizes text (``TextEncoder`` does)."""

    @property
    def max_tokens(self) -> int: ...
    @property
    def special_tokens(self) -> int: ...
    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


@dataclass(frozen=True)
class Tokens:
    """A tokenizer seen from the chunker.

    ``spans(text)`` gives the ``(start, end)`` character offsets of the tokens of
    ``text`` in order, without special tokens and without truncation; ``special``
    is how many special tokens every input gets on top; ``limit`` is the most
    tokens per input (special ones included) the encoder keeps, or None.
    """

    spans: Callable[[str], list[tuple[int, int]]]
    special: int = 0
    limit: int | None = None

    def count(self, text: str) -> int:
        """Tokens the encoder sees for ``text`` as one input, special tokens included."""
        return len(self.spans(text)) + self.special


def tokens_for(encoder: Encoder) -> Tokens:
    """The token counter of ``encoder``, or ConfigError if it cannot tokenize text."""
    if not isinstance(encoder, Tokenizing):
        raise ConfigError(
            f"the {encoder.name!r} encoder cannot count tokens, so documents cannot be "
            "chunked for it; ingest documents into a collection with the 'text' encoder"
        )
    return Tokens(encoder.token_spans, encoder.special_tokens, encoder.max_tokens)
