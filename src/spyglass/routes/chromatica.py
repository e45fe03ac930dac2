"""Chromatica's ``GET /search``, so its clients and load tests run against Spyglass.

It searches the color collection named by the ``compat_color_collection``
setting. ``fast_mode=true`` answers from the index alone; otherwise the first
``rerank_candidates`` hits are reranked by Sinkhorn earth mover's distance. The
answer keeps Chromatica's shape, with what it left as placeholders filled in:
real ``dominant_colors`` per image, a ``rank``, and the real time of each stage.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from spyglass.auth.tenancy import collection_for
from spyglass.engine import Engine, rerank_hits
from spyglass.errors import InvalidRequest
from spyglass.routes.deps import engine, run
from spyglass.stores import base

router = APIRouter(tags=["compatibility: Chromatica"])

TIMES = ("ann_time_ms", "rerank_time_ms", "total_time_ms")


class ResultOut(BaseModel):
    image_id: str
    file_path: str
    distance: float = Field(description="Lower is closer: EMD when reranked, else L2.")
    rank: int
    dominant_colors: list[str]


class MetadataOut(BaseModel):
    ann_time_ms: float
    rerank_time_ms: float
    total_time_ms: float
    index_size: int
    fast_mode: bool


class ChromaticaOut(BaseModel):
    query_id: str
    query: dict[str, Any]
    results_count: int
    results: list[ResultOut]
    metadata: MetadataOut


@router.get("/search", response_model=ChromaticaOut)
async def search(
    request: Request,
    colors: Annotated[
        str, Query(description="Comma-separated hex colors, with or without '#', 3 or 6 digits.")
    ],
    weights: Annotated[
        str | None, Query(description="Comma-separated positive weights, one per color.")
    ] = None,
    k: Annotated[int, Query(ge=1)] = 50,
    fast_mode: Annotated[bool, Query(description="Skip the rerank: index order only.")] = False,
) -> Response:
    """Images whose palettes are closest to a weighted color query."""
    name = collection_for(request, engine(request).settings.compat_color_collection)
    body = await run(request, palette_search, engine(request), name, colors, weights, k, fast_mode)
    return Response(render(body), media_type="application/json")


def render(body: dict[str, Any]) -> bytes:
    """``body`` as JSON whose length does not depend on the timings.

    Times are written in exponent form (``1.234e+01``), always 9 characters, so
    the same query gives an answer of the same length every time: ``ab``
    counts an answer whose length differs from the first as a failed request.
    """
    meta = body["metadata"]
    rest = orjson.dumps({key: value for key, value in body.items() if key != "metadata"})
    times = ",".join(f'"{key}":{meta[key]:.3e}' for key in TIMES)
    tail = orjson.dumps({key: value for key, value in meta.items() if key not in TIMES})
    return rest[:-1] + b',"metadata":{' + times.encode() + b"," + tail[1:] + b"}"


def palette_search(
    engine: Engine, name: str, colors: str, weights: str | None, k: int, fast_mode: bool
) -> dict[str, Any]:
    """The Chromatica answer; blocking (runs in the worker's thread pool)."""
    started = time.perf_counter()
    settings = engine.settings
    if k > settings.max_k:
        raise InvalidRequest(
            f"k is {k}; the most this server returns is {settings.max_k}", field="k"
        )
    hexes = [part.strip() for part in colors.split(",")]
    mass = None if weights is None else _numbers(weights)
    info = engine.get_collection(name)
    if info.spec.encoder != "color":
        raise InvalidRequest(
            f"collection {name!r} (setting compat_color_collection) does not use the color encoder",
            field="colors",
        )
    encoder = engine.encoder("color", name)
    vector = encoder.encode_palette(hexes, mass, "colors")[0]
    candidates = k if fast_mode else max(k, settings.rerank_candidates)
    query = base.Query(vector=vector, k=candidates, vectors=True)
    [hits] = engine.store.search(name, [query])
    found = time.perf_counter()
    if not fast_mode and hits:
        hits = rerank_hits(encoder, vector, hits, k)
    done = time.perf_counter()
    results = [
        {
            "image_id": hit.id,
            "file_path": hit.payload.get("file_path", hit.payload.get("file_name", hit.id)),
            "distance": -hit.score,  # the L2 distance in fast mode, the EMD when reranked
            "rank": rank,
            "dominant_colors": [
                color.hex
                for color in encoder.dominant_colors(hit.vector)  # type: ignore[attr-defined]
            ],
        }
        for rank, hit in enumerate(hits[:k], 1)
    ]
    return {
        "query_id": str(uuid.uuid4()),
        "query": {"colors": hexes, "weights": mass},
        "results_count": len(results),
        "results": results,
        "metadata": {
            "ann_time_ms": (found - started) * 1000,
            "rerank_time_ms": (done - found) * 1000,
            "total_time_ms": (time.perf_counter() - started) * 1000,
            "index_size": info.count,
            "fast_mode": fast_mode,
        },
    }


def _numbers(text: str) -> list[float]:
    values = []
    for i, part in enumerate(text.split(",")):
        try:
            values.append(float(part))
        except ValueError:
            raise InvalidRequest(
                f"{part.strip()!r} is not a number", field=f"weights[{i}]"
            ) from None
    return values
