"""Nearest-neighbour search, one query or a batch."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Request, Response

from spyglass.routes.deps import engine, run
from spyglass.routes.fastjson import FastJSONRoute
from spyglass.schema import BatchSearchIn, BatchSearchOut, HitOut, SearchIn, SearchOut
from spyglass.stores.base import Hit

router = APIRouter(prefix="/collections/{name}", tags=["search"], route_class=FastJSONRoute)


def hits_out(hits: list[Hit]) -> list[HitOut]:
    return [HitOut(id=h.id, score=h.score, payload=h.payload, text=h.text) for h in hits]


def hits_json(hits: list[Hit]) -> list[dict[str, object]]:
    return [{"id": h.id, "score": h.score, "payload": h.payload, "text": h.text} for h in hits]


@router.post("/search", response_model=SearchOut)
async def search(name: str, body: SearchIn, request: Request) -> Response:
    """The k items most similar to a vector or a text; ``score`` is higher for closer items."""
    started = time.perf_counter()
    results = await run(request, engine(request).search, name, [body])
    # The hot path: the shape is SearchOut's, serialised straight from plain values.
    content = {"hits": hits_json(results[0]), "took_ms": _ms(started)}
    return Response(orjson.dumps(content), media_type="application/json")


@router.post("/search/batch", response_model=BatchSearchOut)
async def search_batch(name: str, body: BatchSearchIn, request: Request) -> BatchSearchOut:
    """Several searches in one request; ``results[i]`` answers ``queries[i]``."""
    started = time.perf_counter()
    results = await run(request, engine(request).search, name, body.queries, "queries")
    return BatchSearchOut(results=[hits_out(r) for r in results], took_ms=_ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
