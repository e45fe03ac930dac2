"""The readable text of an HTML page, with its title and headings, by the stdlib parser.

Scripts, styles and other non-content elements (``noscript``, ``template``,
``svg``, ``iframe``...) are dropped. Block elements (paragraphs, list items,
table rows, headings, ``div``...) become paragraphs separated by blank lines,
``<br>`` a line break, table cells are separated by ``" | "``; whitespace
inside a block is collapsed as a browser does, except in ``<pre>``. Entities
are decoded. ``h1``-``h6`` start sections with heading paths. The title is the
``<title>``, else the first ``h1``. Nothing is fetched: links, images and
stylesheets are ignored.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from spyglass.ingest.documents import HeadingPath, Part

__all__ = ["html_document"]

_SKIP = frozenset(
    {"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "canvas"}
)
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog",
        "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header",
        "hgroup", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table",
        "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_CELLS = frozenset({"td", "th"})
_SPACES = re.compile(r"\s+")
_BLANKS = re.compile(r"[^\S\n]+")
_AROUND_BREAK = re.compile(r" *\n *")


def html_document(markup: str) -> tuple[Part, str | None]:
    """The page as one part with sections, and its title (None if it has none)."""
    parser = _TextParser()
    parser.feed(markup)
    parser.close()
    return parser.result()


class _TextParser(HTMLParser):
    """Collects blocks of text in document order, tracking headings and the title."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._blocks: list[str] = []
        self._length = 0
        self._inline: list[tuple[str, bool]] = []
        self._skipping: list[str] = []
        self._pre = 0
        self._heading: int | None = None
        self._in_title = False
        self._title: list[str] = []
        self._first_h1: str | None = None
        self._path = HeadingPath()
        self._cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping:
            if tag in _SKIP:
                self._skipping.append(tag)
            return
        if tag in _SKIP:
            self._skipping.append(tag)
        elif tag == "title":
            self._in_title = True
        elif tag == "br":
            self._inline.append(("\n", True))
        elif tag in _HEADINGS:
            self._flush()
            self._heading = _HEADINGS[tag]
        elif tag in _CELLS and self._cell:
            self._inline.append((" | ", False))
        elif tag in _BLOCK:
            self._flush()
        if tag == "pre":
            self._pre += 1
        if tag in _CELLS:
            self._cell = True
        elif tag == "tr":
            self._cell = False

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
            return
        if tag == "title":
            self._in_title = False
        elif tag in _HEADINGS and self._heading is not None:
            level = self._heading
            text = self._flush()
            self._heading = None
            if text is not None:
                self._path.enter(text[0], level, text[1])
                if level == 1 and self._first_h1 is None:
                    self._first_h1 = text[1]
        elif tag in _BLOCK and tag not in _CELLS:
            self._flush()
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag == "tr":
            self._cell = False

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._in_title:
            self._title.append(data)
        else:
            self._inline.append((data, self._pre > 0))

    def _flush(self) -> tuple[int, str] | None:
        """End the current block: its start offset and text, or None if it is blank."""
        pieces, self._inline = self._inline, []
        text = "".join(data if verbatim else _SPACES.sub(" ", data) for data, verbatim in pieces)
        if not any(verbatim and data != "\n" for data, verbatim in pieces):
            text = _AROUND_BREAK.sub("\n", _BLANKS.sub(" ", text).strip())
        text = text.strip("\n")
        if not text.strip():
            return None
        start = self._length + (2 if self._blocks else 0)
        self._blocks.append(text)
        self._length = start + len(text)
        return start, text

    def result(self) -> tuple[Part, str | None]:
        self._flush()
        title = " ".join("".join(self._title).split()) or self._first_h1
        text = "\n\n".join(self._blocks)
        return Part(text, sections=self._path.sections()), title
