"""Upsert, read and delete items."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from spyglass.routes.deps import engine, run
from spyglass.routes.etag import tagged, tagged_bytes
from spyglass.routes.fastjson import FastJSONRoute
from spyglass.schema import DeleteIn, DeleteOut, ItemOut, UpsertIn, UpsertOut

router = APIRouter(prefix="/collections/{name}", tags=["items"], route_class=FastJSONRoute)

#: What a stored image is served as; anything else goes as application/octet-stream.
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")


@router.post("/items", response_model=UpsertOut)
async def upsert(name: str, body: UpsertIn, request: Request) -> UpsertOut:
    """Insert or replace items by id. Returns once the write is durable."""
    version = await run(request, engine(request).upsert, name, body.items)
    return UpsertOut(upserted=len({item.id for item in body.items}), version=version)


@router.get("/items/{item_id:path}", response_model=ItemOut)
async def get_item(name: str, item_id: str, request: Request) -> Response:
    """One item by id (ids may contain "/", as folder ingestion makes them), with an ETag."""
    item = await run(request, engine(request).get_item, name, item_id)
    out = ItemOut(id=item.id, vector=item.vector.tolist(), text=item.text, payload=item.payload)
    return tagged(request, out)


@router.get(
    "/images/{item_id:path}",
    response_class=Response,
    responses={200: {"content": {media: {} for media in IMAGE_TYPES}}, 404: {}},
)
async def get_image(name: str, item_id: str, request: Request) -> Response:
    """The image file an item was made from (kept when the keep_images setting is on),
    with an ETag; 404 when the item has none."""
    file = await run(request, engine(request).get_file, name, item_id)
    media_type = file.media_type if file.media_type in IMAGE_TYPES else "application/octet-stream"
    return tagged_bytes(request, file.data, media_type)


@router.post("/delete", response_model=DeleteOut)
async def delete(name: str, body: DeleteIn, request: Request) -> DeleteOut:
    """Delete items by id; unknown ids are ignored and not counted."""
    deleted, version = await run(request, engine(request).delete_items, name, body.ids)
    return DeleteOut(deleted=deleted, version=version)
