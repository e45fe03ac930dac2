"""Split prose into chunks that fit the encoder, counted in its own tokens.

A text encoder keeps a fixed number of tokens per input and drops the rest, and
a hit is only useful if it points at the passage that matched. So documents are
cut into chunks of at most ``max_tokens`` tokens *as the collection's encoder
counts them*, special tokens included (``[CLS]`` and ``[SEP]`` for MiniLM, whose
window is 256): a chunk is never truncated when it is embedded.

The cuts follow the structure of the text. A span too long for one chunk is cut
at blank lines (paragraphs); a piece still too long at line breaks; then after
sentence ends (``.``, ``!``, ``?``, ``…``, maybe a closing quote or bracket,
then whitespace); then between words. At each level the pieces are packed
greedily, in order, while they fit, so a chunk is a run of whole paragraphs, or
of whole lines of one paragraph, or of whole sentences of one line, or of words
of one sentence. Cuts never fall inside a word, with one exception: a single
word (a run of non-whitespace) longer than a whole chunk is cut at token
boundaries into pieces that are chunks of their own.

``breaks`` are offsets where a new chunk must start (Markdown headings): no
chunk and no overlap crosses them.

Overlap: every chunk but the first of a section (and but a piece of an over-long
word, or the chunk after one) starts with the end of the previous chunk: the
longest run of whole words ending the previous chunk that holds at most
``overlap`` tokens, leaving the previous chunk's first word out. Room for it is
kept in every chunk, so a chunk's own new text holds at most
``max_tokens - special tokens - overlap`` tokens.

Every chunk is a slice of the original string (``text[c.start:c.end] == c.text``)
without whitespace at its edges, and together the chunks cover every
non-whitespace character.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from spyglass.ingest.tokens import Tokens

__all__ = ["Chunk", "chunk_text"]

_WORD = re.compile(r"\S+")
_LINE_BREAK = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")
PARAGRAPH, LINE, SENTENCE, WORD = range(4)
"""Levels of the gaps between words, from the most to the least natural cut."""


@dataclass(frozen=True)
class Chunk:
    """One passage, where it sits in the text (``end`` exclusive), and its token count.

    ``tokens`` is what the encoder sees for ``text``, special tokens included.
    """

    text: str
    start: int
    end: int
    tokens: int


@dataclass(frozen=True)
class _Segment:
    """A chunk's own text: words ``lo`` to ``hi - 1``, or a piece of word ``lo`` (not whole)."""

    start: int
    end: int
    lo: int
    hi: int
    whole: bool = True


def chunk_text(
    text: str,
    tokens: Tokens,
    *,
    max_tokens: int = 256,
    overlap: int = 32,
    breaks: Iterable[int] = (),
) -> list[Chunk]:
    """Cut ``text`` into chunks of at most ``max_tokens`` tokens each, in order.

    ``overlap`` tokens (at most) of each chunk are repeated at the start of the
    next; ``breaks`` are offsets where a new chunk must start. Whitespace-only
    text gives no chunks. Raises ValueError when the sizes leave no room for text.
    """
    budget = max_tokens - tokens.special
    if budget < 1:
        raise ValueError(f"max_tokens must exceed the {tokens.special} special tokens")
    if not 0 <= overlap < budget:
        raise ValueError(f"overlap must be in [0, {budget}) tokens, not {overlap}")
    layout = _Layout(text, tokens)
    chunks: list[Chunk] = []
    for lo, hi in layout.sections(breaks):
        segments = layout.split(lo, hi, PARAGRAPH, budget - overlap)
        chunks.extend(layout.chunks(segments, max_tokens, overlap))
    return chunks


class _Layout:
    """The words of a text, the level of each gap between them, and their token counts."""

    def __init__(self, text: str, tokens: Tokens) -> None:
        self.text = text
        self.tokens = tokens
        words = [match.span() for match in _WORD.finditer(text)]
        self.starts = [start for start, _ in words]
        self.ends = [end for _, end in words]
        self.spans = tokens.spans(text)
        counts = [0] * len(words)
        word = 0
        for token_start, _ in self.spans:
            while word < len(words) - 1 and token_start >= self.ends[word]:
                word += 1
            if words:
                counts[word] += 1
        self.prefix = [0]
        for count in counts:
            self.prefix.append(self.prefix[-1] + count)
        self.gaps = [PARAGRAPH] + [self._gap(i) for i in range(1, len(words))]

    def _gap(self, word: int) -> int:
        """The level of the whitespace before ``word``."""
        breaks = len(_LINE_BREAK.findall(self.text, self.ends[word - 1], self.starts[word]))
        if breaks:
            return PARAGRAPH if breaks > 1 else LINE
        previous = self.text[self.starts[word - 1] : self.ends[word - 1]]
        return SENTENCE if _SENTENCE_END.search(previous) else WORD

    def count(self, lo: int, hi: int) -> int:
        """Tokens of words ``lo`` to ``hi - 1`` (no special tokens), from the whole-text pass."""
        return self.prefix[hi] - self.prefix[lo]

    def exact(self, start: int, end: int) -> int:
        """Tokens of ``text[start:end]`` tokenized on its own (no special tokens)."""
        return len(self.tokens.spans(self.text[start:end]))

    def sections(self, breaks: Iterable[int]) -> list[tuple[int, int]]:
        """Word ranges between the break offsets, empty ones left out."""
        bounds = sorted({0, len(self.starts), *(bisect_left(self.starts, b) for b in breaks)})
        return [(lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False) if lo < hi]

    def split(self, lo: int, hi: int, level: int, budget: int) -> list[_Segment]:
        """Words ``lo`` to ``hi - 1`` cut at gaps of ``level`` or finer until each fits."""
        if self.count(lo, hi) <= budget:
            return [_Segment(self.starts[lo], self.ends[hi - 1], lo, hi)]
        if hi - lo == 1:
            return self.cut_word(lo, budget)
        cuts = [i for i in range(lo + 1, hi) if self.gaps[i] <= level]
        if not cuts:
            return self.split(lo, hi, level + 1, budget)
        segments: list[_Segment] = []
        group: int | None = None
        bounds = [lo, *cuts, hi]
        for a, b in zip(bounds, bounds[1:], strict=False):
            if group is not None and self.count(group, b) <= budget:
                continue
            if group is not None:
                segments.append(_Segment(self.starts[group], self.ends[a - 1], group, a))
                group = None
            if self.count(a, b) <= budget:
                group = a
            else:
                segments.extend(self.split(a, b, level + 1, budget))
        if group is not None:
            segments.append(_Segment(self.starts[group], self.ends[hi - 1], group, hi))
        return segments

    def cut_word(self, word: int, budget: int) -> list[_Segment]:
        """A word longer than ``budget`` tokens, cut at token starts into pieces that fit.

        Each piece is checked by tokenizing it on its own, because a piece of a
        word can tokenize differently from the same characters inside the word.
        Only a single character that alone needs more than ``budget`` tokens can
        give a piece over the budget.
        """
        start, end = self.starts[word], self.ends[word]
        token_starts = (s for s, _ in self.spans[self.prefix[word] : self.prefix[word + 1]])
        cuts = sorted({s for s in token_starts if start < s < end} | {end})
        pieces: list[_Segment] = []
        while start < end:
            first = bisect_right(cuts, start)
            last = min(first + budget - 1, len(cuts) - 1)
            while last > first and self.exact(start, cuts[last]) > budget:
                last -= 1
            stop = cuts[last]
            if self.exact(start, stop) > budget:
                stop = start + 1
                while stop < cuts[first] and self.exact(start, stop + 1) <= budget:
                    stop += 1
            pieces.append(_Segment(start, stop, word, word + 1, whole=False))
            start = stop
        return pieces

    def chunks(self, segments: list[_Segment], max_tokens: int, overlap: int) -> list[Chunk]:
        """The segments as chunks, each with the overlap before it, checked token-exact.

        A chunk over ``max_tokens`` when tokenized on its own (possible only with
        tokenizers whose tokens depend on context beyond a word) loses its overlap,
        and if that is not enough its segment is split again with a smaller budget.
        """
        chunks: list[Chunk] = []
        pending = deque(segments)
        previous: tuple[int, _Segment] | None = None
        while pending:
            segment = pending.popleft()
            first = segment.lo
            if overlap and previous is not None and previous[1].whole and segment.whole:
                while first - 1 > previous[0] and self.count(first - 1, segment.lo) <= overlap:
                    first -= 1
            start = self.starts[first] if first < segment.lo else segment.start
            count = self.tokens.count(self.text[start : segment.end])
            if count > max_tokens and first < segment.lo:
                first, start = segment.lo, segment.start
                count = self.tokens.count(self.text[start : segment.end])
            if count > max_tokens and segment.whole:
                smaller = max(1, self.count(segment.lo, segment.hi) - (count - max_tokens) - 1)
                parts = self.split(segment.lo, segment.hi, PARAGRAPH, smaller)
                if parts != [segment]:
                    pending.extendleft(reversed(parts))
                    continue
            chunks.append(Chunk(self.text[start : segment.end], start, segment.end, count))
            previous = (first, segment)
        return chunks
