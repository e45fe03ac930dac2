"""What routes share: the engine, and running blocking work off the event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from anyio import to_thread
from fastapi import Request

from spyglass.engine import Engine

T = TypeVar("T")


def engine(request: Request) -> Engine:
    value: Engine = request.app.state.engine
    return value


async def run(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in the worker's bounded thread pool (store I/O, FAISS, models)."""
    return await to_thread.run_sync(fn, *args, limiter=request.app.state.limiter)
