"""The innermost layer: a bug becomes a 500 problem that every other layer sees.

Starlette answers an unhandled exception from its outermost layer, outside every
middleware of ours, so that 500 would carry no request id and no security
headers, and the access log and metrics would not see its status. Caught here,
inside them all, it is logged with its traceback and answered like any other
problem, and the outer layers treat it like any other response.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spyglass.problems import internal_error


class CrashGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_watching(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_watching)
        except Exception:
            if started:  # too late for an answer: let the server close the connection
                raise
            await internal_error(Request(scope))(scope, receive, send)
