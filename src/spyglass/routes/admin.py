"""Operator routes (the ``admin`` scope): API keys and the server's status."""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from spyglass import __version__
from spyglass.auth.keys import DEFAULT_TENANT, READ, KeyInfo, KeyRing
from spyglass.routes.deps import engine, run
from spyglass.settings import masked_settings

router = APIRouter(tags=["admin"])


class KeyIn(BaseModel):
    tenant: str = Field(
        DEFAULT_TENANT, description="The organization whose collections the key sees."
    )
    scopes: list[str] = Field([READ], description="Any of read, write, admin.")
    label: str = Field("", max_length=200, description="A note for people: who or what uses it.")


class KeyOut(BaseModel):
    id: str = Field(description="Names the key in lists and `keys revoke`; not a secret.")
    tenant: str
    scopes: list[str]
    label: str
    created_at: float
    revoked_at: float | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself. Shown this once: only its hash is stored.")


class KeyList(BaseModel):
    keys: list[KeyOut]


class CollectionStatus(BaseModel):
    name: str = Field(description="Stored name: `tenant~name` for a tenant's collection.")
    count: int
    version: int
    encoder: str
    loaded: bool = Field(description="Its index is in this worker's memory.")


class StatusOut(BaseModel):
    version: str
    pid: int = Field(description="The worker that answered.")
    uptime_s: float = Field(description="Seconds since this worker started.")
    open: bool = Field(description="No API key exists: the server answers anyone.")
    collections: list[CollectionStatus]
    models: list[str] = Field(description="Encoders loaded in this worker.")
    model_failures: dict[str, str]
    settings: dict[str, Any] = Field(description="Settings in force; secrets masked.")
    admission: dict[str, Any] = Field(
        default_factory=dict,
        description="This worker's admission lanes by route class: limit in force, in flight,"
        " queued, queue cap, whether overloaded, mean service and queue delay (ms), the"
        " worker's open connections, admitted and shed by reason.",
    )
    door: dict[str, Any] = Field(
        default_factory=dict,
        description="This worker's door: its refusal pace (per second), the requests parked"
        " now waiting for their refusal, and how many were parked since it started.",
    )
    express: dict[str, int] = Field(
        default_factory=dict,
        description="This worker's express lane (plain vector searches answered by the HTTP"
        " protocol): searches answered, waited for a slot, refused by their lane, and handed"
        " to the ASGI app; empty when it is off.",
    )


def _ring(request: Request) -> KeyRing:
    ring: KeyRing = request.app.state.key_ring
    return ring


def _key_out(info: KeyInfo) -> KeyOut:
    return KeyOut(
        id=info.id,
        tenant=info.tenant,
        scopes=list(info.scopes),
        label=info.label,
        created_at=info.created_at,
        revoked_at=info.revoked_at,
    )


@router.post("/admin/keys", response_model=NewKeyOut, status_code=201)
async def create_key(body: KeyIn, request: Request) -> NewKeyOut:
    """Create a key for a tenant; the answer holds the key, which is never shown again."""
    new = await run(request, _ring(request).store.create, body.tenant, body.scopes, body.label)
    return NewKeyOut(**_key_out(new.info).model_dump(), key=new.key)


@router.get("/admin/keys", response_model=KeyList)
async def list_keys(
    request: Request,
    revoked: Annotated[bool, Query(description="Include revoked keys.")] = False,
) -> KeyList:
    """Every key, without secrets."""
    infos = await run(request, _ring(request).store.list, revoked)
    return KeyList(keys=[_key_out(info) for info in infos])


@router.delete("/admin/keys/{key_id}", response_model=KeyOut)
async def revoke_key(key_id: str, request: Request) -> KeyOut:
    """Revoke a key: every worker refuses it from its next request on."""
    return _key_out(await run(request, _ring(request).store.revoke, key_id))


@router.get("/status", response_model=StatusOut)
async def status(request: Request) -> StatusOut:
    """What this worker serves: collections, models, uptime, version and settings."""
    eng = engine(request)
    infos = await run(request, eng.store.list_collections)
    loaded = set(eng.store.loaded())
    admission = getattr(request.app.state, "admission", None)
    return StatusOut(
        version=__version__,
        pid=os.getpid(),
        uptime_s=round(time.time() - request.app.state.started_at, 3),
        open=_ring(request).open,
        collections=[
            CollectionStatus(
                name=info.spec.name,
                count=info.count,
                version=info.version,
                encoder=info.spec.encoder,
                loaded=info.spec.name in loaded,
            )
            for info in infos
        ],
        models=eng.encoders.loaded(),
        model_failures=getattr(request.app.state, "encoder_failures", {}),
        settings=masked_settings(eng.settings),
        admission=admission.snapshot() if admission is not None else {},
        door=door.snapshot() if (door := getattr(request.app.state, "door", None)) else {},
        express=fast.snapshot() if (fast := getattr(request.app.state, "express", None)) else {},
    )
