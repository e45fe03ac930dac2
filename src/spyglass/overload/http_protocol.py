"""uvicorn's HTTP protocol with the door in it: a refused request never becomes a task.

Past capacity most requests are refused, and what a refusal costs is what is left
for the requests admitted. Refused by the ASGI door (:mod:`spyglass.middleware.door`),
a request still costs uvicorn's request cycle, an asyncio task, FastAPI's outer
layers and uvicorn's header checks on the response, about 180 µs of CPU against
about 1.2 ms for a vector search. Here the door is asked as soon as the request
line and headers are parsed, and the response, its headers and body encoded once at
start-up, is written straight to the socket; the request's body is parsed and dropped.
A request let in is marked so that the ASGI door does not ask again, and counted in
its lane until its task ends (``Lane.entered``): a search served on the event loop
never waits at admission, so the requests of one loop iteration would otherwise all
find the lane empty.

The app hands its :class:`~spyglass.middleware.door.Door` over in its lifespan
state. Only a request with nothing ahead of it on its connection is refused here
(a pipelined one waits its turn and meets the ASGI door), so responses keep their
order. A request that expects ``100 Continue``, or is not keep-alive, gets
``Connection: close`` and the connection is closed after the refusal.

Refusals are sent at the door's pace (:mod:`spyglass.overload.pacer`): one past
it is parked, its connection no longer read, until the pace allows or a pipelined
request behind it needs the connection.

It also keeps the count of the worker's open connections in the lanes' census:
each holds at most one request, so when they would all fit in a lane's burst
queue that lane need not shed (see :mod:`spyglass.overload.lane`).
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse

import httptools
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from spyglass.middleware.door import DOOR_PASSED, DOOR_STATE, Door, Refusal
from spyglass.overload.lane import Lane

STATUS_LINE = b"HTTP/1.1 503 Service Unavailable\r\n"


class DoorHttpProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that lets the door refuse before the ASGI app runs."""

    _refused = False
    _entering: Lane | None = None
    _parked: tuple[bytes, bool] | None = None
    """A refusal waiting for the door's pace: the response and whether to keep the
    connection (see :mod:`spyglass.overload.pacer`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._count_connections()

    def connection_lost(self, exc: Exception | None) -> None:
        self._parked = None
        super().connection_lost(exc)
        self._count_connections()

    def _count_connections(self) -> None:
        """Tell the lanes how many connections are open (see ``Lane.fits``)."""
        door: Door | None = self.app_state.get(DOOR_STATE)
        if door is not None:
            door.admission.census.connections = len(self.server_state.connections)

    def on_message_begin(self) -> None:
        if self._parked is not None:  # a pipelined request behind it: answer in order
            self._answer_parked()
        self._refused = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        door: Door | None = self.app_state.get(DOOR_STATE)
        if (
            door is None
            or self.pipeline
            or not (self.cycle is None or self.cycle.response_complete)
            or self.parser.should_upgrade()
        ):
            super().on_headers_complete()
            return
        method = self.parser.get_method().decode("ascii")
        path = httptools.parse_url(self.url).path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        path = self.root_path + path  # as the ASGI scope's "path" has it
        answer = door.enter(method, path)
        if not isinstance(answer, Refusal):
            self.scope["state"][DOOR_PASSED] = True  # the ASGI door need not ask again
            self._entering = answer
            super().on_headers_complete()
            self._entering = None
            return
        self._refused = True
        keep_alive = (
            self.parser.get_http_version() != "1.0"
            and self.parser.should_keep_alive()
            and not self.expect_100_continue
        )
        response = self._encoded(door, answer, keep_alive=keep_alive, head=method == "HEAD")
        now = time.monotonic()
        if door.pacer.refuse_now(now):
            self._send_refusal(response, keep_alive)
            return
        self._parked = (response, keep_alive)  # answered when the pace allows
        self.flow.pause_reading()
        door.pacer.park(self, now)
        if door.drain is None:
            _schedule_drain(door, self.loop, now)

    def _encoded(self, door: Door, answer: Refusal, *, keep_alive: bool, head: bool) -> bytes:
        """``answer``'s bytes, made once per second and kept on the door: the server's
        default headers (its ``date``) are a new list each second."""
        defaults = self.server_state.default_headers
        key = (answer.name, keep_alive, head)
        cached = door.encoded.get(key)
        if cached is not None and cached[0] is defaults:
            return cached[1]
        response = encode(answer, defaults, keep_alive=keep_alive, head=head)
        door.encoded[key] = (defaults, response)
        return response

    def _send_refusal(self, response: bytes, keep_alive: bool) -> None:
        self.transport.write(response)
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()  # reads again, or arms the keep-alive timeout

    def _answer_parked(self) -> None:
        """Send the parked refusal, if the connection is still there to take it."""
        parked, self._parked = self._parked, None
        if parked is not None and not self.transport.is_closing():
            self._send_refusal(*parked)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        lane = self._entering
        if lane is not None:  # counted in its lane until its task ends, however it ends
            lane.entered += 1
            app = _counted(app, lane)
        super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()


def _drain(door: Door) -> None:
    """Send the parked refusals that are due, and set the timer for the next."""
    now = time.monotonic()
    for protocol in door.pacer.due(now):
        protocol._answer_parked()
    _schedule_drain(door, asyncio.get_running_loop(), now)


def _schedule_drain(door: Door, loop: asyncio.AbstractEventLoop, now: float) -> None:
    """Set the door's timer for when the next parked refusal is due, if one is parked."""
    wait = door.pacer.next_due_s(now)
    door.drain = None if wait is None else loop.call_later(wait, _drain, door)


def _counted(app: ASGI3Application, lane: Lane) -> ASGI3Application:
    async def counted(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        try:
            await app(scope, receive, send)
        finally:
            lane.entered -= 1

    return counted


def encode(
    answer: Refusal, defaults: list[tuple[bytes, bytes]], *, keep_alive: bool, head: bool
) -> bytes:
    """``answer`` as HTTP/1.1 bytes after the server's ``defaults`` headers (``date``,
    ``server``); no body for a HEAD request, ``Connection: close`` unless ``keep_alive``."""
    lines = [STATUS_LINE]
    for name, value in defaults:
        lines += (name, b": ", value, b"\r\n")
    lines.append(answer.header_lines)
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    if not head:
        lines.append(answer.content)
    return b"".join(lines)
