"""Loading a file or folder into a collection: batches through the engine, with a report."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from spyglass.engine import Engine
from spyglass.errors import NotFound
from spyglass.ingest.loaders import Record, Source
from spyglass.schema import CollectionIn


@dataclass(frozen=True)
class IngestReport:
    collection: str
    items: int
    seconds: float
    index_seconds: float
    version: int
    created: bool

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0


def ingest(
    engine: Engine,
    collection: str,
    source: Source,
    *,
    encoder: str | None = None,
    metric: str = "cosine",
    on_batch: Callable[[int], None] | None = None,
) -> IngestReport:
    """Upsert every record of ``source`` into ``collection`` and build its index.

    A missing collection is created from the first batch: with the text encoder
    when records carry text only, with ``encoder="none"`` and the vectors'
    dimension when they carry vectors. Re-running is idempotent (ids are stable).
    The next batch is read while this one is written, so parsing overlaps the
    durable commit. The clock starts after the collection exists and its encoder is loaded, so the
    rate is the steady-state one; building the index afterwards is timed apart.
    """
    started = time.perf_counter()
    items = 0
    version = 0
    created = False
    for batch in _read_ahead(source.batches()):
        if items == 0:
            created = _ensure_collection(engine, collection, batch, encoder, metric)
            started = time.perf_counter()
        version = engine.upsert(collection, batch)
        items += len(batch)
        if on_batch is not None:
            on_batch(len(batch))
    loaded = time.perf_counter()
    if items:
        engine.store.optimize(collection)
    return IngestReport(
        collection=collection,
        items=items,
        seconds=loaded - started,
        index_seconds=time.perf_counter() - loaded,
        version=version,
        created=created,
    )


def _read_ahead(batches: Iterator[list[Record]]) -> Iterator[list[Record]]:
    """``batches``, with the next one read in a thread while the caller uses this one.

    One batch ahead at most, so memory stays bounded; a loader error surfaces
    in order, after every batch before it has been handed over.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="spyglass-read") as reader:
        pending = reader.submit(next, batches, None)
        while (batch := pending.result()) is not None:
            pending = reader.submit(next, batches, None)
            yield batch


def _ensure_collection(
    engine: Engine, name: str, batch: list[Record], encoder: str | None, metric: str
) -> bool:
    try:
        info = engine.get_collection(name)
    except NotFound:
        pass
    else:
        if info.spec.encoder != "none":
            engine.encoders.get(info.spec.encoder)
        return False
    first = batch[0]
    if encoder is None:
        encoder = "none" if first.vector is not None else "text"
    dim = len(first.vector) if encoder == "none" and first.vector is not None else None
    body = CollectionIn.model_validate({"dim": dim, "metric": metric, "encoder": encoder})
    _, created = engine.create_collection(name, body)
    return created
