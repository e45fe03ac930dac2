"""Loading a file or folder into a collection: batches through the engine, with a report.

Rows (JSONL, CSV, Parquet) and images go here in batches as they are read;
documents go through :mod:`spyglass.ingest.incremental`, which chunks them with
the collection's tokenizer and skips files that did not change.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from spyglass.engine import Engine
from spyglass.errors import NotFound
from spyglass.ingest.incremental import check_quantization, ingest_documents
from spyglass.ingest.passages import DocumentSource
from spyglass.ingest.records import Record, Source, read_ahead
from spyglass.ingest.report import IngestReport
from spyglass.schema import CollectionIn

__all__ = ["IngestReport", "ingest"]


def ingest(
    engine: Engine,
    collection: str,
    source: Source | DocumentSource,
    *,
    encoder: str | None = None,
    metric: str | None = None,
    quantization: str | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> IngestReport:
    """Upsert every record of ``source`` into ``collection`` and build its index.

    A missing collection is created from the first batch: with the text encoder
    when records carry text only, the image encoder when they carry images, and
    ``encoder="none"`` and the vectors' dimension when they carry vectors; its index
    stores vectors as ``quantization`` says (default ``none``).
    Re-running is idempotent (ids are stable). The next batch is read while this
    one is written, so parsing overlaps the durable commit. The clock starts after
    the collection exists and its encoder is loaded, so the rate is the
    steady-state one; building the index afterwards is timed apart.
    ``on_batch`` is called with the progress made, in ``source.unit``.
    """
    if isinstance(source, DocumentSource):
        return ingest_documents(
            engine,
            collection,
            source,
            encoder=encoder,
            metric=metric,
            quantization=quantization,
            on_progress=on_batch,
        )
    started = time.perf_counter()
    items = 0
    version = 0
    created = False
    with engine.store.bulk():
        for batch in read_ahead(source.batches()):
            if items == 0:
                created = _ensure_collection(
                    engine, collection, batch, encoder, metric, quantization
                )
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
        note=source.note,
    )


def _ensure_collection(
    engine: Engine,
    name: str,
    batch: list[Record],
    encoder: str | None,
    metric: str | None,
    quantization: str | None,
) -> bool:
    try:
        info = engine.get_collection(name)
    except NotFound:
        pass
    else:
        check_quantization(name, info.spec.index.quantization, quantization)
        if info.spec.encoder != "none":
            engine.encoders.get(info.spec.encoder)
        return False
    first = batch[0]
    if encoder is None:
        if first.vector is not None:
            encoder = "none"
        else:
            encoder = "image" if first.image is not None else "text"
    dim = len(first.vector) if encoder == "none" and first.vector is not None else None
    index = {} if quantization is None else {"quantization": quantization}
    body = CollectionIn.model_validate(
        {"dim": dim, "metric": metric, "encoder": encoder, "index": index}
    )
    _, created = engine.create_collection(name, body)
    return created
