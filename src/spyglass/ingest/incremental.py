"""Ingesting documents incrementally: unchanged files skipped, changed files replaced.

Each file's chunks are items ``<path>#0`` .. ``<path>#<n-1>`` whose payload
holds the SHA-256 of the file's bytes, the chunk settings and ``chunks = n``
(see :mod:`spyglass.ingest.passages`). For every file found:

* chunk 0 stored with the same hash and settings: the file is **skipped**
  (nothing is parsed or embedded);
* otherwise its new chunks are upserted over the old ids, then the old ids
  past the new count are deleted, so a file that shrank leaves no orphans and
  one that grew leaves no duplicates.

Chunk 0 is written last, after the other chunks and the deletions, and it is
what marks the file as done: if a load stops halfway, the next run finds the
old (or no) hash on chunk 0 and does the file again. Stale ids are found from
the old ``chunks`` count and by probing the ids after it, which also catches
chunks a stopped run left past that count.

Files deleted from the folder keep their chunks: without a way to list a
collection's items by payload, the ingest cannot find them. Delete them by id
(``<path>#0`` .. ``<path>#<chunks - 1>``) when needed.

Only methods the engine exposes are used: ``get_item``, ``upsert`` and
``delete_items``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from spyglass.engine import Engine
from spyglass.errors import ConfigError, NotFound
from spyglass.ingest.passages import DocumentSource, chunk_id, file_records
from spyglass.ingest.records import Record, read_ahead
from spyglass.ingest.report import IngestReport
from spyglass.ingest.tokens import Tokens, tokens_for
from spyglass.schema import CollectionIn

__all__ = ["CHUNKS_PER_WRITE", "ingest_documents"]

T = TypeVar("T")

CHUNKS_PER_WRITE = 128
"""Most chunks per upsert. Embedding a 256-token chunk costs far more than its share
of a commit, so bigger writes gain nothing, and smaller ones keep the progress moving:
128 chunks take a few seconds to embed on two cores."""


@dataclass(frozen=True)
class _File:
    """What to do for one file: skip it, or write ``records`` and delete chunks ``stale``."""

    source: str
    skipped: bool
    records: Sequence[Record] = ()
    stale: range = range(0)


@dataclass
class _Totals:
    items: int = 0
    deleted: int = 0
    version: int = 0


def ingest_documents(
    engine: Engine,
    collection: str,
    source: DocumentSource,
    *,
    encoder: str | None = None,
    metric: str | None = None,
    quantization: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Chunk, embed and upsert the files of ``source``; skip unchanged ones.

    A missing collection is created with ``encoder`` (default ``text``). Chunks
    are sized with the collection encoder's tokenizer, so the encoder must be
    able to count tokens and keep ``source.chunk_tokens`` of them.
    ``on_progress`` is called with the number of files done.
    """
    created, tokens = _prepare(engine, collection, source, encoder or "text", metric, quantization)
    batch = min(source.batch_size, engine.settings.max_batch, CHUNKS_PER_WRITE)
    started = time.perf_counter()
    totals = _Totals()
    skipped = 0
    empty: list[str] = []
    pending: list[_File] = []
    waiting = 0
    for plan in read_ahead(_plans(engine, collection, source, tokens)):
        if plan.skipped:
            skipped += 1
            if on_progress is not None:
                on_progress(1)
            continue
        if not plan.records:
            empty.append(plan.source)
        pending.append(plan)
        waiting += len(plan.records)
        if waiting >= batch:
            _flush(engine, collection, pending, batch, totals, on_progress)
            pending, waiting = [], 0
    _flush(engine, collection, pending, batch, totals, on_progress)
    loaded = time.perf_counter()
    if totals.items or totals.deleted:
        engine.store.optimize(collection)
    else:
        totals.version = engine.get_collection(collection).version
    return IngestReport(
        collection=collection,
        items=totals.items,
        seconds=loaded - started,
        index_seconds=time.perf_counter() - loaded,
        version=totals.version,
        created=created,
        files=len(source.files),
        skipped_files=skipped,
        deleted=totals.deleted,
        empty_files=tuple(empty),
        note=source.note,
    )


def _prepare(
    engine: Engine,
    name: str,
    source: DocumentSource,
    encoder: str,
    metric: str | None,
    quantization: str | None,
) -> tuple[bool, Tokens]:
    """The collection's token counter, checked against the chunk settings; create if missing.

    The checks come first, so a bad setting never leaves an empty new collection.
    """
    try:
        info = engine.get_collection(name)
        encoder = info.spec.encoder
        exists = True
        check_quantization(name, info.spec.index.quantization, quantization)
    except NotFound:
        exists = False
    if encoder == "none":
        raise ConfigError(
            f"collection {name!r} has no encoder, so it cannot embed documents; "
            "ingest them into a collection with the 'text' encoder"
        )
    tokens = tokens_for(engine.encoders.get(encoder))
    if tokens.limit is not None and source.chunk_tokens > tokens.limit:
        raise ConfigError(
            f"chunks of {source.chunk_tokens} tokens would be truncated: the {encoder!r} "
            f"encoder keeps {tokens.limit} tokens per input, special tokens included"
        )
    room = source.chunk_tokens - tokens.special
    if not 0 <= source.chunk_overlap < room:
        raise ConfigError(
            f"chunks of {source.chunk_tokens} tokens hold {max(room, 0)} of text after the "
            f"{tokens.special} special tokens; the overlap ({source.chunk_overlap}) must be "
            "smaller"
        )
    if exists:
        return False, tokens
    index = {} if quantization is None else {"quantization": quantization}
    body = CollectionIn.model_validate({"metric": metric, "encoder": encoder, "index": index})
    _, created = engine.create_collection(name, body)
    return created, tokens


def check_quantization(name: str, has: str, asked: str | None) -> None:
    """Refuse to load into an existing collection quantized otherwise than asked."""
    if asked is not None and asked != has:
        raise ConfigError(
            f"collection {name!r} exists with quantization {has!r}, not {asked!r}; a"
            " collection's quantization is chosen when it is created"
        )


def _plans(
    engine: Engine, collection: str, source: DocumentSource, tokens: Tokens
) -> Iterator[_File]:
    """For each file in order: skip it, or its new chunks and the stale ids to delete."""
    for file in source.files:
        relative = source.relative(file)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read it ({exc.strerror})") from None
        digest = hashlib.sha256(data).hexdigest()
        stored = _payload(engine, collection, chunk_id(relative, 0))
        if (
            stored is not None
            and stored.get("sha256") == digest
            and stored.get("chunking") == source.chunking
        ):
            yield _File(relative, skipped=True)
            continue
        records = file_records(source, file, data, digest, tokens)
        old = stored.get("chunks") if stored is not None else None
        end = max(old if isinstance(old, int) else 0, len(records))
        while _payload(engine, collection, chunk_id(relative, end)) is not None:
            end += 1
        yield _File(relative, skipped=False, records=records, stale=range(len(records), end))


def _payload(engine: Engine, collection: str, item_id: str) -> dict[str, Any] | None:
    try:
        return engine.get_item(collection, item_id).payload
    except NotFound:
        return None


def _flush(
    engine: Engine,
    collection: str,
    files: list[_File],
    batch: int,
    totals: _Totals,
    on_progress: Callable[[int], None] | None,
) -> None:
    """Write ``files``: every chunk but the first, then deletions, then the first chunks."""
    rest = [record for file in files for record in file.records[1:]]
    for part in _slices(rest, batch):
        totals.version = engine.upsert(collection, part)
    stale = [chunk_id(file.source, index) for file in files for index in file.stale]
    for ids in _slices(stale, batch):
        deleted, totals.version = engine.delete_items(collection, ids)
        totals.deleted += deleted
    heads = [file.records[0] for file in files if file.records]
    for part in _slices(heads, batch):
        totals.version = engine.upsert(collection, part)
    totals.items += len(rest) + len(heads)
    if on_progress is not None and files:
        on_progress(len(files))


def _slices(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
