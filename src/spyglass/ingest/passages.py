"""Documents as items: the files to ingest, and each file's chunks as records.

A chunk's id is ``<path relative to the folder>#<chunk_index>`` (from 0), so
ingesting the folder again addresses the same items. Its payload:

``source``       the relative path, ``/``-separated
``chunk_index``  the chunk's position in the file, from 0
``start``/``end`` character offsets of the chunk in the text of its part
``title``        the document's title
``sha256``       of the file's bytes; with ``chunking``, how a re-ingest knows the file is unchanged
``chunks``       how many chunks the file has
``chunking``     ``{"max_tokens", "overlap"}`` the chunks were cut with
``page``         PDF only: the page, from 1 (offsets then index that page's text)
``headings``     Markdown, HTML and DOCX only: the heading path of the chunk's section
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spyglass.errors import ConfigError
from spyglass.ingest.chunker import chunk_text
from spyglass.ingest.readers import read_document
from spyglass.ingest.records import MAX_ID_CHARS, Record
from spyglass.ingest.tokens import Tokens

__all__ = ["DocumentSource", "chunk_id", "file_records"]


@dataclass(frozen=True)
class DocumentSource:
    """Document files to chunk and upsert, found under ``root`` (ids are relative to it).

    ``total`` counts files, the unit of its progress. Chunks are cut with
    ``chunk_tokens`` and ``chunk_overlap`` tokens of the collection's encoder,
    which is known only once the collection is, so chunking happens in the
    pipeline rather than here. ``note`` is for the user (images that were ignored).
    """

    path: Path
    root: Path
    files: tuple[Path, ...]
    batch_size: int
    chunk_tokens: int = 256
    chunk_overlap: int = 32
    note: str = ""
    unit: str = "files"

    @property
    def total(self) -> int:
        return len(self.files)

    def relative(self, file: Path) -> str:
        """The file's path below ``root``, ``/``-separated: its chunks' ``source``."""
        return file.relative_to(self.root).as_posix()

    @property
    def chunking(self) -> dict[str, int]:
        """The chunk settings as stored in the payload."""
        return {"max_tokens": self.chunk_tokens, "overlap": self.chunk_overlap}


def chunk_id(source: str, index: int) -> str:
    """The item id of chunk ``index`` of the file ``source``."""
    return f"{source}#{index}"


def file_records(
    source: DocumentSource, file: Path, data: bytes, sha256: str, tokens: Tokens
) -> list[Record]:
    """The chunks of ``file`` (whose bytes are ``data``) as text records, in order."""
    relative = source.relative(file)
    if len(chunk_id(relative, 0)) > MAX_ID_CHARS - 8:
        raise ConfigError(f"{file}: the path is too long for an item id ({MAX_ID_CHARS} chars)")
    document = read_document(file, data)
    found: list[tuple[dict[str, Any], str]] = []
    for part in document.parts:
        chunks = chunk_text(
            part.text,
            tokens,
            max_tokens=source.chunk_tokens,
            overlap=source.chunk_overlap,
            breaks=part.breaks(),
        )
        for chunk in chunks:
            payload: dict[str, Any] = {"start": chunk.start, "end": chunk.end}
            if part.page is not None:
                payload["page"] = part.page
            headings = part.headings_at(chunk.start)
            if headings is not None:
                payload["headings"] = headings
            found.append((payload, chunk.text))
    common = {"title": document.title, "sha256": sha256, "chunks": len(found)}
    return [
        Record(
            id=chunk_id(relative, index),
            vector=None,
            text=text,
            payload={
                "source": relative,
                "chunk_index": index,
                **payload,
                **common,
                "chunking": source.chunking,
            },
        )
        for index, (payload, text) in enumerate(found)
    ]
