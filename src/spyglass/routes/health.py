"""Liveness and readiness probes."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from spyglass.errors import SpyglassError
from spyglass.routes.deps import engine, run
from spyglass.schema import Health

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=Health)
async def livez() -> Health:
    """The process is up and its event loop answers. Checks nothing else.

    ``checks.pid`` names the worker process that answered.
    """
    return Health(status="ok", checks={"pid": str(os.getpid())})


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request) -> JSONResponse:
    """The store answers, the configured models are loaded and the configured document
    sources were ingested once. ``checks.pid`` names the worker process that answered."""
    checks: dict[str, str] = {"pid": str(os.getpid())}
    ok = bool(getattr(request.app.state, "ready", False))
    checks["models"] = ", ".join(engine(request).encoders.loaded()) or "none needed"
    for name, why in getattr(request.app.state, "encoder_failures", {}).items():
        checks[f"encoder {name}"] = why
        ok = False
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None and engine(request).settings.redis_url:
        checks["redis"] = await limiter.check()
        if checks["redis"] != "ok" and not engine(request).settings.rate_limit_fail_open:
            ok = False
    sources = getattr(request.app.state, "sources", None)
    if sources is not None and engine(request).settings.sources:
        checks["sources"] = sources.state.error or sources.state.status
        ok = ok and sources.ready
    try:
        await run(request, engine(request).store.check)
        checks["store"] = "ok"
    except SpyglassError as exc:
        checks["store"] = str(exc)
        ok = False
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
