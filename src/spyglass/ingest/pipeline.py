"""Loading a file or folder into a collection: batches through the engine, with a report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spyglass.engine import Engine
from spyglass.errors import NotFound
from spyglass.ingest.loaders import Record, open_source
from spyglass.schema import CollectionIn


@dataclass(frozen=True)
class IngestReport:
    collection: str
    items: int
    seconds: float
    version: int
    created: bool

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0


def ingest(
    engine: Engine,
    collection: str,
    path: Path,
    *,
    batch_size: int = 256,
    encoder: str | None = None,
    metric: str = "cosine",
    on_start: Callable[[int | None], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> IngestReport:
    """Upsert every record under ``path`` into ``collection`` and build its index.

    A missing collection is created from the first batch: with the text encoder
    when records carry text only, with ``encoder="none"`` and the vectors'
    dimension when they carry vectors. Re-running is idempotent (ids are stable).
    """
    source = open_source(path, batch_size=min(batch_size, engine.settings.max_batch))
    if on_start is not None:
        on_start(source.total)
    started = time.perf_counter()
    items = 0
    version = 0
    created = False
    for batch in source.batches():
        if not created and items == 0:
            created = _ensure_collection(engine, collection, batch, encoder, metric)
        version = engine.upsert(collection, batch)
        items += len(batch)
        if on_batch is not None:
            on_batch(len(batch))
    if items:
        engine.store.optimize(collection)
    return IngestReport(
        collection=collection,
        items=items,
        seconds=time.perf_counter() - started,
        version=version,
        created=created,
    )


def _ensure_collection(
    engine: Engine, name: str, batch: list[Record], encoder: str | None, metric: str
) -> bool:
    try:
        engine.get_collection(name)
        return False
    except NotFound:
        pass
    first = batch[0]
    if encoder is None:
        encoder = "none" if first.vector is not None else "text"
    dim = len(first.vector) if encoder == "none" and first.vector is not None else None
    body = CollectionIn.model_validate({"dim": dim, "metric": metric, "encoder": encoder})
    _, created = engine.create_collection(name, body)
    return created
