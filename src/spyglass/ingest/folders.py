"""Folders (and single files) of documents or images, opened as a source.

A folder is searched recursively; hidden files and folders (a leading ``.``)
are skipped, files of other types are ignored, and paths are sorted. A
collection holds one kind of thing, since its encoder embeds either text or
images, so a folder is read as documents or as images:

* ``kind="auto"`` (the default) takes whichever kind the folder holds; a
  folder with both is read as the kind it holds more of (a photo folder with a
  README is a photo folder), the others are ignored and the source's ``note``
  says how many, for the command's summary; equal counts are an error;
* ``kind="documents"`` or ``kind="images"`` reads only that kind and ignores
  the other (a docs folder with more screenshots than pages).
"""

from __future__ import annotations

import os
from pathlib import Path

from spyglass.errors import ConfigError
from spyglass.ingest.images import IMAGE_SUFFIXES, image_source
from spyglass.ingest.passages import DocumentSource
from spyglass.ingest.readers import DOCUMENT_SUFFIXES
from spyglass.ingest.records import Source

__all__ = ["KINDS", "open_files"]

KINDS = ("auto", "documents", "images")
"""What a folder may be read as."""


def open_files(
    path: Path,
    *,
    kind: str = "auto",
    batch_size: int = 1000,
    chunk_tokens: int = 256,
    chunk_overlap: int = 32,
    image_batch: int = 64,
) -> Source | DocumentSource:
    """A folder, or one document or image file, as a document or image source."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if chunk_tokens < 1:
        raise ConfigError(f"chunk tokens must be at least 1, not {chunk_tokens}")
    if not 0 <= chunk_overlap < chunk_tokens:
        raise ConfigError(
            f"chunk overlap must be at least 0 and less than chunk tokens ({chunk_tokens}), "
            f"not {chunk_overlap}"
        )
    if path.is_dir():
        root = path
        documents, images = _scan(path)
    else:
        root = path.parent
        suffix = path.suffix.lower()
        documents = [path] if suffix in DOCUMENT_SUFFIXES else []
        images = [path] if suffix in IMAGE_SUFFIXES else []
    note = ""
    if kind == "auto" and documents and images:
        if len(documents) == len(images):
            raise ConfigError(
                f"{path}: holds {len(documents)} documents and as many images, and a "
                "collection takes one kind; choose with --kind documents or --kind images"
            )
        kind = "documents" if len(documents) > len(images) else "images"
        other = "images" if kind == "documents" else "documents"
        ignored = len(images) if kind == "documents" else len(documents)
        note = f"{ignored} {other} ignored (--kind {other} reads them)"
    if kind != "images" and documents:
        return DocumentSource(
            path, root, tuple(documents), batch_size, chunk_tokens, chunk_overlap, note=note
        )
    if kind != "documents" and images:
        return image_source(path, root, images, image_batch, note=note)
    wanted = {
        "auto": DOCUMENT_SUFFIXES + IMAGE_SUFFIXES,
        "documents": DOCUMENT_SUFFIXES,
        "images": IMAGE_SUFFIXES,
    }[kind]
    where = "folder holds no" if path.is_dir() else "is none of the types read as"
    raise ConfigError(f"{path}: {where} {', '.join(wanted)} files")


def _scan(folder: Path) -> tuple[list[Path], list[Path]]:
    """Document and image files under ``folder``, hidden ones skipped, sorted by path."""
    documents: list[Path] = []
    images: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            suffix = Path(name).suffix.lower()
            if name.startswith("."):
                continue
            if suffix in DOCUMENT_SUFFIXES:
                documents.append(Path(root, name))
            elif suffix in IMAGE_SUFFIXES:
                images.append(Path(root, name))

    def key(file: Path) -> str:
        return file.relative_to(folder).as_posix()

    return sorted(documents, key=key), sorted(images, key=key)
