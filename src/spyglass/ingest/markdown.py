"""Headings of a Markdown text: the sections and heading paths chunks carry.

Recognises ATX headings (``## Origin``, up to three spaces before, an optional
closing run of ``#``) and setext headings (a paragraph underlined with ``===``
for level 1 or ``---`` for level 2), as CommonMark does. Lines inside fenced
code blocks (```` ``` ```` or ``~~~``) are never headings, so a ``# comment``
in a shell snippet does not start a section. YAML front matter (``---`` lines
around ``key: value`` lines at the very top) is not a heading either; its
``title:`` is the title when the text has no level-1 heading. Everything else is
left to the chunker: the text is not rewritten, so offsets point into the
file's own text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from spyglass.ingest.documents import HeadingPath, Section

__all__ = ["markdown_sections"]

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*\r?\n?$")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*\r?\n?$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_FRONT_MATTER = re.compile(r"---[ \t]*\r?\n(.*?\r?\n)(?:---|\.\.\.)[ \t]*(?:\r?\n|$)", re.DOTALL)
_FRONT_TITLE = re.compile(r"^title:[ \t]*[\"']?(.*?)[\"']?[ \t]*\r?$", re.MULTILINE)


def markdown_sections(text: str) -> tuple[tuple[Section, ...], str | None]:
    """The sections of ``text`` and its title: the first level-1 heading, else the first."""
    path = HeadingPath()
    titles: list[tuple[int, str]] = []
    fence: str | None = None
    paragraph: list[tuple[int, str]] = []
    front = _FRONT_MATTER.match(text)
    skip = front.end() if front is not None else 0
    front_title = _FRONT_TITLE.search(front.group(1)) if front is not None else None
    for start, line in _lines(text):
        if start < skip:
            continue
        fence_match = _FENCE.match(line)
        if fence is not None:
            if fence_match is not None and fence_match.group(1).startswith(fence):
                fence = None
            continue
        if fence_match is not None:
            fence = fence_match.group(1)[0] * 3
            paragraph = []
            continue
        atx = _ATX.match(line)
        setext = _SETEXT.match(line)
        if atx is not None:
            level, title = len(atx.group(1)), (atx.group(2) or "").strip()
            path.enter(start, level, title)
            titles.append((level, title))
            paragraph = []
        elif setext is not None and paragraph:
            level = 1 if setext.group(1)[0] == "=" else 2
            title = " ".join(content.strip() for _, content in paragraph)
            path.enter(paragraph[0][0], level, title)
            titles.append((level, title))
            paragraph = []
        elif line.strip():
            paragraph.append((start, line))
        else:
            paragraph = []
    named = [(level, title) for level, title in titles if title]
    top = next((title for level, title in named if level == 1), None)
    if top is None and front_title is not None and front_title.group(1):
        top = front_title.group(1)
    return path.sections(), top or (named[0][1] if named else None)


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Each line with its start offset, the newline kept."""
    start = 0
    for line in text.splitlines(keepends=True):
        yield start, line
        start += len(line)
