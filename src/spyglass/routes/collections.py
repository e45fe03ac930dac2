"""Create, list, inspect and drop collections."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request, Response

from spyglass.auth.tenancy import owned_by, principal_of, shown
from spyglass.engine import Engine
from spyglass.routes.deps import engine, run
from spyglass.routes.etag import tagged
from spyglass.routes.fastjson import FastJSONRoute
from spyglass.schema import CollectionIn, CollectionList, CollectionOut, IndexIn, IndexStateOut
from spyglass.stores.base import CollectionInfo, IndexState

router = APIRouter(prefix="/collections", tags=["collections"], route_class=FastJSONRoute)


def collection_out(info: CollectionInfo, state: IndexState | None = None) -> CollectionOut:
    spec = info.spec
    return CollectionOut(
        name=shown(spec.name),
        dim=spec.dim,
        metric=spec.metric,
        encoder=spec.encoder,
        index=IndexIn(**dataclasses.asdict(spec.index)),
        options=spec.options,
        count=info.count,
        version=info.version,
        created_at=info.created_at,
        index_state=IndexStateOut(**dataclasses.asdict(state)) if state is not None else None,
    )


@router.put("/{name}", response_model=CollectionOut, status_code=201)
async def create_collection(
    name: str, body: CollectionIn, request: Request, response: Response
) -> CollectionOut:
    """Create a collection; 201 when new, 200 when it exists with the same settings."""
    info, created = await run(request, engine(request).create_collection, name, body)
    response.status_code = 201 if created else 200
    return collection_out(info)


@router.get("", response_model=CollectionList)
async def list_collections(request: Request) -> Response:
    """Every collection of the caller's tenant, with an ETag for revalidation
    (``If-None-Match``)."""
    tenant = principal_of(request).tenant
    infos = await run(request, engine(request).store.list_collections)
    mine = [collection_out(info) for info in infos if owned_by(tenant, info.spec.name)]
    return tagged(request, CollectionList(collections=mine))


@router.get("/{name}", response_model=CollectionOut)
async def get_collection(name: str, request: Request) -> Response:
    """Settings, item count, data version (changes on every write) and the index's
    progress, with an ETag."""
    info, state = await run(request, _with_state, engine(request), name)
    return tagged(request, collection_out(info, state))


def _with_state(engine: Engine, name: str) -> tuple[CollectionInfo, IndexState | None]:
    return engine.get_collection(name), engine.index_state(name)


@router.delete("/{name}", status_code=204)
async def delete_collection(name: str, request: Request) -> Response:
    eng = engine(request)
    await run(request, eng.get_collection, name)
    await run(request, eng.store.delete_collection, name)
    return Response(status_code=204)
