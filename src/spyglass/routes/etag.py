"""ETag and Cache-Control for the GET routes whose answers change only on writes.

The tag is a hash of the answer itself, so it is exact without tracking anything:
a client (or a proxy) revalidates with ``If-None-Match`` and gets ``304 Not
Modified`` and no body while nothing was written. ``Cache-Control: no-cache``
makes every use revalidate, since any worker may have taken a write meanwhile.
"""

from __future__ import annotations

import hashlib

import orjson
from fastapi import Request, Response
from pydantic import BaseModel

CACHE_CONTROL = "no-cache"


def tagged(request: Request, model: BaseModel) -> Response:
    """``model`` as JSON with its ETag, or an empty 304 when the client has it already."""
    return tagged_bytes(request, orjson.dumps(model.model_dump(mode="json")), "application/json")


def tagged_bytes(request: Request, body: bytes, media_type: str) -> Response:
    """``body`` with its ETag, or an empty 304 when the client has it already."""
    tag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
    headers = {"ETag": tag, "Cache-Control": CACHE_CONTROL}
    known = _tags(request.headers.get("if-none-match", ""))
    if tag in known or "*" in known:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _tags(header: str) -> set[str]:
    """The entity tags of an If-None-Match header (weak ones compare by their opaque part)."""
    if header.strip() == "*":
        return {"*"}
    return {part.strip().removeprefix("W/") for part in header.split(",") if part.strip()}
