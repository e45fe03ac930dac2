"""What every loader produces: records to upsert, and a source that yields them in batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

__all__ = ["MAX_ID_CHARS", "Record", "Source", "read_ahead"]

T = TypeVar("T")
_END = object()

MAX_ID_CHARS = 512
"""Longest item id the API accepts; loaders check it so the error names the input."""


@dataclass(frozen=True)
class Record:
    """One item to upsert, as read from a source.

    ``image`` holds the raw bytes of an image file, undecoded: the engine decodes
    them within its size and pixel limits before the encoder sees them.
    """

    id: str
    vector: np.ndarray | None
    text: str | None
    payload: dict[str, Any]
    image: bytes | None = None


@dataclass(frozen=True)
class Source:
    """An opened file or folder: its size if known cheaply, and its records on demand.

    ``total`` is for progress bars, counted in ``unit``: the Parquet row count,
    the line count of a JSONL or CSV file (an upper bound when it holds blank
    lines or multi-line cells), or the number of images. ``records`` and
    ``batches`` read the source again on every call and hold one batch in memory
    at most. ``note`` is for the user (files of another kind that were ignored).
    """

    path: Path
    total: int | None
    batch_size: int
    read: Callable[[], Iterator[Record]]
    unit: str = "items"
    note: str = ""

    def records(self) -> Iterator[Record]:
        """Every record, one at a time."""
        return self.read()

    def batches(self) -> Iterator[list[Record]]:
        """Every record, in lists of at most ``batch_size`` (none of them empty)."""
        batch: list[Record] = []
        for record in self.read():
            batch.append(record)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, with the next one read in a thread while the caller uses this one.

    One item ahead at most, so memory stays bounded; a loader error surfaces
    in order, after every item before it has been handed over.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="spyglass-read") as reader:
        pending = reader.submit(next, items, _END)
        while (item := pending.result()) is not _END:
            pending = reader.submit(next, items, _END)
            yield cast(T, item)
