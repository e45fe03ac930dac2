"""``create_app(settings)``: the ASGI application, with no global state."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI
from starlette.routing import Route

from spyglass import __version__, problems
from spyglass.engine import Engine
from spyglass.routes import (
    chromatica,
    collections,
    faces,
    findthisfit,
    health,
    items,
    search,
    uploads,
)
from spyglass.settings import Settings
from spyglass.stores import open_store

SETTINGS_ENV = "SPYGLASS__RESOLVED_SETTINGS"

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """The Spyglass API for ``settings``; the store and models open in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings)
        engine = Engine(settings, store)
        app.state.engine = engine
        executor = ThreadPoolExecutor(settings.search_threads, thread_name_prefix="spyglass")
        app.state.executor = executor
        app.state.face_sessions = faces.sessions_for(engine)
        app.state.ready = False
        try:
            app.state.encoder_failures = engine.warm_up()
            for name, why in app.state.encoder_failures.items():
                log.error("encoder %s cannot load: %s", name, why)
            app.state.ready = True
            yield
        finally:
            executor.shutdown(wait=True)
            store.close()

    app = FastAPI(
        title="Spyglass",
        version=__version__,
        summary="Similarity search over text, images, colors, faces and vectors.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.router.routes.append(
        Route("/collections/{name}/search", search.lean_search, methods=["POST"])
    )
    routers = (health, collections, items, search, uploads, faces, findthisfit, chromatica)
    for module in routers:
        app.include_router(module.router)
    return app


def app_from_environment() -> FastAPI:
    """The app for a uvicorn worker: settings handed down by ``spyglass serve``."""
    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings(**orjson.loads(raw)) if raw else Settings()
    return create_app(settings)
