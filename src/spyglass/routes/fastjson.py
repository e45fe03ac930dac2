"""Request bodies parsed with orjson: several times faster than ``json`` for long vectors.

A body orjson refuses is parsed again with the standard library, which also
accepts ``NaN`` and ``Infinity``: the engine then rejects those with a 422 that
names the field, instead of a bare "not JSON". Real garbage is still a 400.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute


class FastJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError:
                self._json = json.loads(body)
        return self._json


class FastJSONRoute(APIRoute):
    """An ``APIRoute`` whose handlers see a :class:`FastJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parse_fast(request: Request) -> Response:
            return await handler(FastJSONRequest(request.scope, request.receive, request._send))

        return parse_fast
