"""What a document loader returns: plain text in parts, with a title and headings.

A :class:`Document` is what the chunker and the payload need from a file of any
format: its title, and its text in one or more :class:`Part`\\ s. A PDF has one
part per page (``page`` counts from 1); other formats have a single part. Chunk
offsets index ``Part.text``: for ``.txt`` and ``.md`` that is the file's text
itself, for HTML, DOCX and PDF the plain text the loader extracted.

Formats with headings (Markdown, HTML, DOCX) also give ``sections``: where each
section starts in the text and its heading path (``("Normans", "Origin")``).
A chunk never spans two sections, and it carries the path of its own.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

__all__ = ["Document", "HeadingPath", "Part", "Section"]


@dataclass(frozen=True)
class Section:
    """A section starts at ``start`` (a heading line) and runs to the next one."""

    start: int
    headings: tuple[str, ...]


@dataclass(frozen=True)
class Part:
    """A stretch of text chunked on its own: a page of a PDF, or a whole file.

    ``sections`` is None for formats without headings (text, PDF); otherwise it
    lists the sections in order, the first starting at 0 (possibly with no
    headings: the text before the first heading).
    """

    text: str
    page: int | None = None
    sections: tuple[Section, ...] | None = None

    def breaks(self) -> list[int]:
        """Offsets where a chunk must start: every section start."""
        return [section.start for section in self.sections or ()]

    def headings_at(self, offset: int) -> list[str] | None:
        """The heading path of the section holding ``offset``, or None without sections."""
        if self.sections is None:
            return None
        starts = [section.start for section in self.sections]
        index = bisect_right(starts, offset) - 1
        return list(self.sections[index].headings) if index >= 0 else []


@dataclass(frozen=True)
class Document:
    """A loaded file: its title (from the file, else its name) and its parts."""

    title: str
    parts: tuple[Part, ...]


class HeadingPath:
    """The path of headings above the current point, as a document is read in order.

    Collects the sections too: ``enter`` a heading where it starts, then
    ``sections()`` gives them all, with a first, heading-less section at 0.
    """

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []
        self._sections: list[Section] = [Section(0, ())]

    def enter(self, start: int, level: int, title: str) -> None:
        """A heading of ``level`` (1 is the top) titled ``title`` starts at ``start``."""
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, " ".join(title.split())))
        section = Section(start, tuple(t for _, t in self._stack if t))
        if self._sections[-1].start == start:
            self._sections[-1] = section
        else:
            self._sections.append(section)

    def sections(self) -> tuple[Section, ...]:
        return tuple(self._sections)
