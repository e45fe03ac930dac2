"""Image files as records: raw bytes in batches, for an image encoder to embed.

The loader does not decode anything: the engine decodes each image with its
safety limits (format, bytes, pixels) before the encoder sees it, as it does for
images sent over HTTP. A record's id is the file's path relative to the folder,
and its payload ``{"file_name": <that path>, "size_bytes": <file size>}``.
Images are big, so batches are smaller than for rows (``image_batch``, 64).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from spyglass.errors import ConfigError
from spyglass.ingest.records import MAX_ID_CHARS, Record, Source

__all__ = ["IMAGE_SUFFIXES", "image_source"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
"""Extensions of the files a folder ingest reads as images."""


def image_source(
    path: Path, root: Path, files: list[Path], batch_size: int, *, note: str = ""
) -> Source:
    """The images ``files`` (below ``root``) as a source of ``batch_size`` records a batch."""
    if batch_size < 1:
        raise ConfigError(f"image batch must be at least 1, not {batch_size}")
    for file in files:
        if len(file.relative_to(root).as_posix()) > MAX_ID_CHARS:
            raise ConfigError(f"{file}: the path is too long for an item id ({MAX_ID_CHARS})")
    return Source(path, len(files), batch_size, lambda: _image_records(root, files), "images", note)


def _image_records(root: Path, files: list[Path]) -> Iterator[Record]:
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read it ({exc.strerror})") from None
        name = file.relative_to(root).as_posix()
        payload = {"file_name": name, "size_bytes": len(data)}
        yield Record(id=name, vector=None, text=None, payload=payload, image=data)
