"""Images as multipart uploads: upsert image items and search by an image file.

The JSON routes take images as base64 (``image``) too; these exist because a
browser form or ``curl -F file=@photo.jpg`` sends files, and base64 costs a
third more bytes. ``items[i]`` in an error is the ``i``-th file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from spyglass.errors import InvalidRequest, PayloadTooLarge
from spyglass.routes.deps import engine, run
from spyglass.routes.search import hits_json
from spyglass.schema import SearchIn, SearchOut, UpsertOut

router = APIRouter(prefix="/collections/{name}", tags=["images"])


@dataclass(frozen=True)
class Upload:
    """One uploaded file as an item (the engine's ``ItemLike``)."""

    id: str
    image: bytes
    payload: dict[str, Any] = field(default_factory=dict)
    vector: None = None
    text: None = None


@router.post("/items/upload", response_model=UpsertOut)
async def upload_items(
    name: str,
    request: Request,
    file: Annotated[list[UploadFile], File(description="One or more image files.")],
    id: Annotated[
        list[str] | None,
        Form(description="Item ids, one per file in order. Omitted: each file's name."),
    ] = None,
    payload: Annotated[
        str | None, Form(description="A JSON object stored with every item of this upload.")
    ] = None,
) -> UpsertOut:
    """Upsert image items from uploaded files; each item's payload also gets
    ``file_name`` and ``size_bytes``."""
    ids = id or []
    if ids and len(ids) != len(file):
        raise InvalidRequest(f"{len(ids)} ids for {len(file)} files; give one per file", field="id")
    shared = _payload(payload)
    uploads = []
    for i, part in enumerate(file):
        data = await read_upload(request, part, f"file[{i}]")
        item_id = ids[i] if ids else (part.filename or "")
        if not item_id:
            raise InvalidRequest("a file without a name needs an id", field=f"id[{i}]")
        info = {"file_name": part.filename or item_id, "size_bytes": len(data)}
        uploads.append(Upload(id=item_id, image=data, payload={**shared, **info}))
    version = await run(request, engine(request).upsert, name, uploads)
    return UpsertOut(upserted=len({u.id for u in uploads}), version=version)


@router.post("/search/upload", response_model=SearchOut)
async def search_upload(
    name: str,
    request: Request,
    file: Annotated[UploadFile, File(description="The query image.")],
    k: Annotated[int, Form(ge=1)] = 10,
    filter: Annotated[str | None, Form(description="A filter as JSON text.")] = None,
    ef: Annotated[int | None, Form(ge=1, le=10000)] = None,
    exact: Annotated[bool, Form()] = False,
    rerank: Annotated[bool, Form()] = True,
    dominant_colors: Annotated[int, Form(ge=0, le=16)] = 0,
) -> Response:
    """The k items most similar to an uploaded image (image, clip, color and face
    collections); ``dominant_colors`` as in a JSON search."""
    started = time.perf_counter()
    data = await read_upload(request, file, "file")
    flt = _json_object(filter, "filter") if filter is not None else None
    query = SearchIn(
        k=k, filter=flt, ef=ef, exact=exact, rerank=rerank, dominant_colors=dominant_colors
    )
    query = query.model_copy(update={"image": data})  # raw bytes: the engine decodes them
    results = await run(request, engine(request).search, name, [query])
    content = {"hits": hits_json(results[0]), "took_ms": round(_ms(started), 3)}
    return Response(orjson.dumps(content), media_type="application/json")


async def read_upload(request: Request, part: UploadFile, field: str) -> bytes:
    """The file's bytes, refusing more than ``max_image_bytes`` before reading them all."""
    limit: int = engine(request).settings.max_image_bytes
    data = await part.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"file is over the {limit}-byte limit (max_image_bytes)", field=field)
    return data


def _payload(text: str | None) -> dict[str, Any]:
    return {} if text is None else _json_object(text, "payload")


def _json_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"not JSON: {exc.msg}", field=field) from None
    if not isinstance(value, dict):
        raise InvalidRequest("must be a JSON object", field=field)
    return value


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
