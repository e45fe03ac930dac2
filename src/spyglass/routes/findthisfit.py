"""Find This Fit's routes, so its clients switch to Spyglass unchanged.

``POST /search_by_image`` and ``POST /search_by_text`` search the collection named
by the ``compat_image_collection`` setting and answer ``{"items": [...]}``: each
item is the payload's fields plus ``id`` and ``similarity``. The similarity is
the collection's own score (cosine similarity for image and clip collections),
so it means the same in every answer; the original divided by the best score of
each result set, which made the top hit 1.0 however poor it was.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from spyglass.auth.tenancy import collection_for
from spyglass.routes.deps import engine, run
from spyglass.routes.fastjson import FastJSONRoute
from spyglass.schema import Body, SearchIn
from spyglass.stores.base import Hit

router = APIRouter(tags=["compatibility: Find This Fit"], route_class=FastJSONRoute)


class ImageQueryIn(Body):
    image_base64: str = Field(description="The query image, base64 (a data: URL also works).")
    k: int = Field(10, ge=1, description="How many items to return.")
    filter: dict[str, Any] | None = None


class TextQueryIn(Body):
    query: str = Field(min_length=1, description="What to look for, in words (clip collections).")
    k: int = Field(10, ge=1, description="How many items to return.")
    filter: dict[str, Any] | None = None


class FitItems(Body):
    items: list[dict[str, Any]]


@router.post("/search_by_image", response_model=FitItems)
async def search_by_image(body: ImageQueryIn, request: Request) -> FitItems:
    """Items that look like the image."""
    query = SearchIn(image=body.image_base64, k=body.k, filter=body.filter)
    return FitItems(items=await _search(request, query, {"image": "image_base64"}))


@router.post("/search_by_text", response_model=FitItems)
async def search_by_text(body: TextQueryIn, request: Request) -> FitItems:
    """Items that match a description (the collection needs the clip encoder)."""
    query = SearchIn(text=body.query, k=body.k, filter=body.filter)
    return FitItems(items=await _search(request, query, {"text": "query"}))


async def _search(
    request: Request, query: SearchIn, rename: dict[str, str]
) -> list[dict[str, Any]]:
    name = collection_for(request, engine(request).settings.compat_image_collection)
    try:
        [hits] = await run(request, engine(request).search, name, [query])
    except Exception as exc:
        _rename_field(exc, rename)
        raise
    return [_item(hit) for hit in hits]


def _item(hit: Hit) -> dict[str, Any]:
    return {**hit.payload, "id": hit.id, "similarity": hit.score}


def _rename_field(exc: Exception, rename: dict[str, str]) -> None:
    """Name this route's body field in an error, not the engine's (``image_base64``)."""
    field = getattr(exc, "field", None)
    if field in rename:
        exc.field = rename[field]  # type: ignore[attr-defined]
