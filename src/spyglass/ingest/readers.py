"""Document loaders: ``.txt``, ``.md``, ``.html``, ``.pdf`` and ``.docx`` files as documents.

Each reader takes the file's bytes (already read, since the pipeline hashes
them) and returns a :class:`~spyglass.ingest.documents.Document`:

* ``.txt``: the text (UTF-8, an optional BOM); titled by the file name.
* ``.md`` / ``.markdown``: the text, with sections at headings (see
  :mod:`spyglass.ingest.markdown`); titled by the first level-1 heading.
* ``.html`` / ``.htm``: the readable text (see :mod:`spyglass.ingest.html_text`);
  UTF-8, else the charset the page declares, else Windows-1252.
* ``.pdf`` (pypdf): one part per page, numbered from 1, with the text layer
  pypdf extracts; titled by the document's metadata. A scanned PDF without a
  text layer gives empty pages, hence no chunks (no OCR here).
* ``.docx`` (python-docx): body paragraphs and tables in order, one block each;
  paragraphs styled ``Heading 1``-``Heading 9`` start sections; titled by the
  document properties, else the ``Title`` paragraph, else the first heading.

Without a title of its own, a document is titled by its file name without the
extension. A file that cannot be read raises :class:`ConfigError` naming it.
"""

from __future__ import annotations

import importlib
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spyglass.errors import ConfigError
from spyglass.ingest.documents import Document, HeadingPath, Part
from spyglass.ingest.html_text import html_document
from spyglass.ingest.markdown import markdown_sections

__all__ = ["DOCUMENT_SUFFIXES", "read_document"]

_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_HEADING_STYLE = re.compile(r"Heading ([1-9])")


def read_document(path: Path, data: bytes) -> Document:
    """The document in ``data``, the contents of ``path``, read by its extension."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ConfigError(f"{path}: not a document ({', '.join(DOCUMENT_SUFFIXES)})")
    return reader(path, data)


def _text(path: Path, data: bytes) -> Document:
    return Document(path.stem, (Part(_decode_utf8(path, data)),))


def _markdown(path: Path, data: bytes) -> Document:
    text = _decode_utf8(path, data)
    sections, title = markdown_sections(text)
    return Document(title or path.stem, (Part(text, sections=sections),))


def _html(path: Path, data: bytes) -> Document:
    try:
        markup = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        declared = _CHARSET.search(data[:4096])
        encoding = declared.group(1).decode("ascii") if declared else "windows-1252"
        try:
            markup = data.decode(encoding, errors="replace")
        except LookupError:
            markup = data.decode("windows-1252", errors="replace")
    part, title = html_document(markup)
    return Document(title or path.stem, (part,))


def _pdf(path: Path, data: bytes) -> Document:
    pypdf = _optional("pypdf", path)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ConfigError(f"{path}: the PDF is encrypted with a password")
        parts = tuple(
            Part(page.extract_text() or "", page=number)
            for number, page in enumerate(reader.pages, start=1)
        )
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except ConfigError:
        raise
    except Exception as exc:  # pypdf raises many types for damaged files
        raise ConfigError(f"{path}: not a readable PDF ({exc})") from None
    title = " ".join(str(title).split()) if title else ""
    return Document(title or path.stem, parts)


def _docx(path: Path, data: bytes) -> Document:
    docx = _optional("docx", path, package="python-docx")
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises zipfile, lxml and its own errors
        raise ConfigError(f"{path}: not a readable DOCX file ({exc})") from None
    blocks: list[str] = []
    length = 0
    path_of_headings = HeadingPath()
    styled_title: str | None = None
    first_heading: str | None = None
    for block in document.iter_inner_content():
        if hasattr(block, "rows"):
            text = "\n".join(
                " | ".join(" ".join(cell.text.split()) for cell in row.cells) for row in block.rows
            )
            style = ""
        else:
            text = block.text.strip()
            style = block.style.name if block.style is not None else ""
        if not text.strip():
            continue
        start = length + (2 if blocks else 0)
        blocks.append(text)
        length = start + len(text)
        heading = _HEADING_STYLE.fullmatch(style or "")
        if heading is not None:
            path_of_headings.enter(start, int(heading.group(1)), text)
            first_heading = first_heading or text
        elif style == "Title":
            styled_title = styled_title or text
    part = Part("\n\n".join(blocks), sections=path_of_headings.sections())
    title = (document.core_properties.title or "").strip() or styled_title or first_heading
    return Document(title or path.stem, (part,))


def _decode_utf8(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _optional(module: str, path: Path, package: str | None = None) -> Any:
    """Import a reader's library, or a ConfigError saying which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{path}: reading {path.suffix} files needs the {package or module} package "
            f"(pip install {package or module})"
        ) from None


_READERS: dict[str, Callable[[Path, bytes], Document]] = {
    ".txt": _text,
    ".md": _markdown,
    ".markdown": _markdown,
    ".html": _html,
    ".htm": _html,
    ".pdf": _pdf,
    ".docx": _docx,
}
DOCUMENT_SUFFIXES = tuple(_READERS)
"""Extensions of the files a folder ingest reads as documents."""
