"""Split prose into search-sized passages with exact character offsets.

A text encoder sees a few hundred tokens at most, and a hit is only useful if it
points at the passage that matched, so long documents are cut into chunks of at
most ``max_chars`` characters before they are embedded. The cuts follow the
structure of the text, from the most to the least natural boundary:

1. blank lines between paragraphs (paragraphs are packed together greedily);
2. markdown headings, which always start a new chunk when the current one
   already holds text, so a section is not glued to the end of the previous one;
3. sentence ends inside a paragraph too long to fit;
4. line breaks, then spaces inside a sentence too long to fit;
5. a hard cut every ``max_chars`` characters, for text with no spaces at all.

Every chunk is a slice of the original string: ``text[c.start:c.end] == c.text``.
Whitespace at the edges of a chunk is dropped by moving the offsets, never by
editing the text, so offsets can be used to highlight the passage in the source.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Chunk", "chunk_text"]

_HEADING = re.compile(r" {0,3}#{1,6}(?:[ \t]|\r?$)")
"""An ATX markdown heading line (CommonMark: up to 3 spaces, 1-6 '#', then a space or EOL)."""

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
"""The opening or closing line of a fenced code block, whose '#' lines are not headings."""

_SPLITTERS = (
    re.compile(r"[.!?…][\"'”’)\]]*(\s+)"),  # sentence ends
    re.compile(r"(\s*\n\s*)"),  # line breaks
    re.compile(r"(\s+)"),  # spaces between words
)
"""Separators tried in turn on a piece still longer than the budget; group 1 is the gap."""


@dataclass(frozen=True)
class Chunk:
    """One passage: its text and where it sits in the original string (``end`` exclusive)."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class _Unit:
    """A span that is never cut further; ``section`` marks a markdown heading."""

    start: int
    end: int
    section: bool = False


def chunk_text(text: str, *, max_chars: int = 1000, overlap: int = 0) -> list[Chunk]:
    """Cut ``text`` into chunks of at most ``max_chars`` characters, in order.

    With ``overlap`` > 0 each chunk but the first of a section also repeats up to
    ``overlap`` characters from the end of the previous chunk (starting at a word
    boundary), so a sentence cut by a boundary is still found whole in one chunk.
    The repeated text counts against ``max_chars``: no chunk is ever longer.
    Whitespace-only text gives no chunks.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, not {max_chars}")
    if not 0 <= overlap < max_chars:
        raise ValueError(f"overlap must be in [0, max_chars), not {overlap}")
    budget = max_chars - overlap
    units = (piece for block in _blocks(text) for piece in _fit(text, block, budget))
    spans = _pack(units, budget)
    chunks: list[Chunk] = []
    previous: _Unit | None = None
    for span in spans:
        start = span.start
        if overlap and previous is not None and not span.section:
            start = _overlap_start(text, previous, span, overlap)
        chunks.append(Chunk(text[start : span.end], start, span.end))
        previous = span
    return chunks


def _lines(text: str) -> Iterator[tuple[int, int]]:
    """The (start, end) of every line, each ending after its newline."""
    pos = 0
    while pos < len(text):
        newline = text.find("\n", pos)
        end = len(text) if newline < 0 else newline + 1
        yield pos, end
        pos = end


def _blocks(text: str) -> Iterator[_Unit]:
    """Paragraphs (runs of non-blank lines) and heading lines, trimmed, in order."""
    start: int | None = None
    end = 0
    fence: str | None = None
    for line_start, line_end in _lines(text):
        line = text[line_start:line_end]
        if fence is None and not line.strip():
            if start is not None:
                yield from _trimmed(text, start, end)
                start = None
            continue
        fence_match = _FENCE.match(line)
        if fence_match is not None:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker[0] * 3
            elif marker.startswith(fence):
                fence = None
        elif fence is None and _HEADING.match(line):
            if start is not None:
                yield from _trimmed(text, start, end)
            yield from _trimmed(text, line_start, line_end, section=True)
            start = None
            continue
        if start is None:
            start = line_start
        end = line_end
    if start is not None:
        yield from _trimmed(text, start, end)


def _trimmed(text: str, start: int, end: int, *, section: bool = False) -> Iterator[_Unit]:
    """The span with whitespace at both edges dropped, unless nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        yield _Unit(start, end, section)


def _fit(text: str, unit: _Unit, budget: int, level: int = 0) -> Iterator[_Unit]:
    """Cut ``unit`` at ever finer separators until every piece fits in ``budget``."""
    if unit.end - unit.start <= budget:
        yield unit
        return
    if level == len(_SPLITTERS):
        for start in range(unit.start, unit.end, budget):
            section = unit.section and start == unit.start
            yield from _trimmed(text, start, min(start + budget, unit.end), section=section)
        return
    pieces: list[_Unit] = []
    start = unit.start
    for match in _SPLITTERS[level].finditer(text, unit.start, unit.end):
        gap_start, gap_end = match.span(1)
        pieces.extend(_trimmed(text, start, gap_start))
        start = gap_end
    pieces.extend(_trimmed(text, start, unit.end))
    for number, piece in enumerate(pieces):
        first = _Unit(piece.start, piece.end, unit.section and number == 0)
        yield from _fit(text, first, budget, level + 1)


def _pack(units: Iterator[_Unit], budget: int) -> list[_Unit]:
    """Join consecutive units greedily while the joined span fits in ``budget``."""
    spans: list[_Unit] = []
    current: _Unit | None = None
    for unit in units:
        if current is None:
            current = unit
        elif unit.section or unit.end - current.start > budget:
            spans.append(current)
            current = unit
        else:
            current = _Unit(current.start, unit.end, current.section)
    if current is not None:
        spans.append(current)
    return spans


def _overlap_start(text: str, previous: _Unit, span: _Unit, overlap: int) -> int:
    """Where a chunk starts when it repeats the tail of ``previous``: on a word start."""
    start = max(previous.start + 1, span.start - overlap)
    if not text[start - 1].isspace():
        while start < span.start and not text[start].isspace():
            start += 1
    while start < span.start and text[start].isspace():
        start += 1
    return start
