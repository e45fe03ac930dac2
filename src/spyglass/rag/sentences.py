"""Split a passage into sentences, each with its character offsets in the passage.

An extractive answer quotes whole sentences and a citation points at one, so
every sentence is a slice of the original string (``text[s.start:s.end] ==
s.text``) without whitespace at its edges; offsets are what a UI highlights.

Cuts fall, in order of preference:

* at blank lines, and around a line that is a Markdown heading, a list item or
  a table row (any other line break is only wrapping, as in text from a PDF);
* after a sentence end: ``.``, ``!``, ``?`` or ``…`` (maybe a closing quote or
  bracket), whitespace, then something that can start a sentence (not a
  lowercase letter). A period after a known abbreviation (``St.``, ``e.g.``,
  ``c.``) or after a single capital (an initial: ``J. R. Tolkien``) is not an
  end. ``。``, ``！`` and ``？`` end a sentence without whitespace after them;
* then, only in a sentence longer than ``max_chars`` (a passage without
  punctuation, a table flattened to text), after ``;`` or ``:``, then between
  words, then anywhere, so that no sentence is longer than ``max_chars``.

Pieces without a letter or digit (a lone bullet, a rule of dashes) are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

__all__ = ["MAX_CHARS", "Sentence", "split_sentences"]

#: Longest sentence kept whole: about 100 words, well inside MiniLM's 256 tokens,
#: and still something a reader takes in as one answer.
MAX_CHARS = 500

_LINE_BREAK = re.compile(r"\r\n|[\n\r\x0b\x0c\x85\u2028\u2029]")
_OWN_LINE = re.compile(r"\s*$|[ \t]*(?:#{1,6}\s|[-*+•]\s|\d{1,3}[.)]\s|\|)")
_SENTENCE_END = re.compile(
    r"(?P<end>[.!?…]+[\"'”’»)\]]*)\s+(?=\S)|(?P<cjk>[。！？]+[」』”’）]*)\s*"
)
_CLAUSE_END = re.compile(r"(?<=[;:；：])\s+")
_WORD_GAP = re.compile(r"\s+")
_TOKEN_BEFORE = re.compile(r"(\S+)\.$")
_CONTENT = re.compile(r"\w")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st sr jr mt ft vs etc e.g i.e cf al approx ca c fl no nos vol"
    " pp p fig figs ed eds rev gen col lt capt sgt gov sen rep inc ltd co corp dept"
    " univ jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k".split()
)


@dataclass(frozen=True)
class Sentence:
    """One sentence: its text and where it sits in the passage (``end`` exclusive)."""

    text: str
    start: int
    end: int


def split_sentences(text: str, max_chars: int = MAX_CHARS) -> list[Sentence]:
    """The sentences of ``text`` in order, none longer than ``max_chars`` characters."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, not {max_chars}")
    sentences: list[Sentence] = []
    for block_start, block_end in _blocks(text):
        for start, end in _sentence_spans(text, block_start, block_end):
            for lo, hi in _fit(text, start, end, max_chars):
                lo, hi = _strip(text, lo, hi)
                if lo < hi and _CONTENT.search(text, lo, hi):
                    sentences.append(Sentence(text[lo:hi], lo, hi))
    return sentences


def _blocks(text: str) -> list[tuple[int, int]]:
    """Spans of ``text`` that are paragraphs, or lines standing on their own.

    A line break separates two blocks when the line before or after it is blank
    or is a heading, a list item or a table row; other line breaks are wrapping.
    """
    lines = []
    start = 0
    for match in _LINE_BREAK.finditer(text):
        lines.append((start, match.start()))
        start = match.end()
    lines.append((start, len(text)))
    blocks = []
    lo = lines[0][0]
    for before, after in pairwise(lines):
        if _own_line(text, *before) or _own_line(text, *after):
            blocks.append((lo, before[1]))
            lo = after[0]
    blocks.append((lo, lines[-1][1]))
    return blocks


def _own_line(text: str, start: int, end: int) -> bool:
    """Whether the line is blank, a heading, a list item or a table row."""
    return _OWN_LINE.match(text[start:end]) is not None


def _split(text: str, start: int, end: int, gap: re.Pattern[str]) -> list[tuple[int, int]]:
    """``text[start:end]`` cut at every match of ``gap`` (the match left out)."""
    spans = []
    for match in gap.finditer(text, start, end):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, end))
    return spans


def _sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """``text[start:end]`` cut after each sentence end that is not an abbreviation's."""
    spans = []
    for match in _SENTENCE_END.finditer(text, start, end):
        if match.group("cjk"):
            cut = match.end("cjk")
        elif text[match.end()].islower() or _is_abbreviation(text[start : match.start() + 1]):
            continue
        else:
            cut = match.end("end")
        spans.append((start, cut))
        start = cut
    spans.append((start, end))
    return spans


def _is_abbreviation(before: str) -> bool:
    """Whether the period ending ``before`` belongs to an abbreviation or an initial."""
    match = _TOKEN_BEFORE.search(before)
    if match is None:
        return False
    token = match.group(1).lstrip("(\"'“‘[")
    if len(token) == 1 and token.isupper():
        return True
    return token.lower() in _ABBREVIATIONS


def _fit(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """``text[start:end]`` as pieces of at most ``max_chars``, cut at the best gaps."""
    if end - start <= max_chars:
        return [(start, end)]
    for gap in (_CLAUSE_END, _WORD_GAP):
        pieces = _split(text, start, end, gap)
        if len(pieces) > 1:
            return _pack(text, pieces, max_chars)
    return [(lo, min(lo + max_chars, end)) for lo in range(start, end, max_chars)]


def _pack(text: str, pieces: list[tuple[int, int]], max_chars: int) -> list[tuple[int, int]]:
    """Consecutive pieces joined greedily while they fit; a piece too long is cut further."""
    out: list[tuple[int, int]] = []
    lo, hi = pieces[0]
    for start, end in pieces[1:]:
        if end - lo <= max_chars:
            hi = end
            continue
        out.extend(_fit(text, lo, hi, max_chars))
        lo, hi = start, end
    out.extend(_fit(text, lo, hi, max_chars))
    return out


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without whitespace at its edges."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
