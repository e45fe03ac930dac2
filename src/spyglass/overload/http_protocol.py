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

A plain vector search the door let in is held until its body is in and offered to
the express lane (:mod:`spyglass.routes.express`), which answers it without the
ASGI app; what the express lane declines goes to the app as if it had just arrived.

It also keeps the count of the worker's open connections in the lanes' census:
each holds at most one request, so when they would all fit in a lane's burst
queue that lane need not shed (see :mod:`spyglass.overload.lane`).
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from dataclasses import dataclass, field

import httptools
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from spyglass.middleware.admission import GRANTED, Granted, Slot
from spyglass.middleware.door import DOOR_PASSED, DOOR_STATE, Door, Refusal
from spyglass.overload.lane import Lane
from spyglass.routes.express import EXPRESS_STATE, Express, Search

STATUS_LINE = b"HTTP/1.1 503 Service Unavailable\r\n"
OK_LINE = b"HTTP/1.1 200 OK\r\n"


async def WAITS(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Stands for the app of a request that waits for the express lane: never run."""
    raise AssertionError("a request waiting for the express lane was run as an app")


@dataclass(slots=True, eq=False)
class Held:
    """A search held for the express lane while its body comes in."""

    express: Express
    lane: Lane
    path: str
    name: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    chunks: list[bytes] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)


class DoorHttpProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that lets the door refuse before the ASGI app runs."""

    _refused = False
    _entering: Lane | None = None
    _held: Held | None = None
    _app: ASGI3Application | None = None
    _granted: Granted | None = None
    """The app for the next request handed over, instead of the server's."""
    _close_after: bool = False
    _parked: tuple[bytes, bool] | None = None
    """A refusal waiting for the door's pace: the response and whether to keep the
    connection (see :mod:`spyglass.overload.pacer`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._count_connections()

    def _count_connections(self) -> None:
        """Tell the lanes how many connections are open (see ``Lane.fits``)."""
        door: Door | None = self.app_state.get(DOOR_STATE)
        if door is not None:
            door.admission.census.connections = len(self.server_state.connections)

    def on_message_begin(self) -> None:
        # A request behind one answered in this same read: the keep-alive timer that
        # answer armed must not close the connection under it.
        self._unset_keepalive_if_required()
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
            if answer is not None and self._hold(method, path, answer):
                return
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

    def _hold(self, method: str, path: str, lane: Lane) -> bool:
        """Hold the request for the express lane, if it is a search it may answer."""
        express: Express | None = self.app_state.get(EXPRESS_STATE)
        if express is None or self.expect_100_continue or self.root_path:
            return False
        name = express.collection(method, path)
        if name is None or not express.takes(self.headers):
            return False
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        self._held = Held(express, lane, path, name, self.headers, keep_alive)
        lane.entered += 1  # counted until answered here or handed to the app
        return True

    def _express(self, held: Held) -> None:
        """Answer the held search: at once if its lane has a slot free, else once it has
        waited for one (and only then is its body read, as the app reads a body only
        once admitted); or give it to the ASGI app as it arrived."""
        self._held = None
        held.lane.entered -= 1
        body = b"".join(held.chunks)
        express = held.express
        search = express.start(held.path, held.name, held.headers)
        if search is None:
            self._to_app(held.lane, body)
            return
        if self._close_after:
            held.keep_alive = False
        if express.free(search):
            if not express.read(search, body):
                self._to_app(held.lane, body)
                return
            self._answer(held, search, express.admit(search), None, body)
            return
        waiting: list[RequestResponseCycle] = []
        got = express.reserve(search, lambda got: self._answer(held, search, got, waiting[0], body))
        if got is None:
            # It waits for a slot, in a request cycle that no task runs: requests
            # pipelined behind it wait their turn, and a shutdown or a disconnect
            # finds it there, as they would any other.
            self._to_app(held.lane, body, WAITS)
            waiting.append(self.cycle)
            return
        self._answer(held, search, got, None, body)

    def _answer(
        self,
        held: Held,
        search: Search,
        got: Slot | str,
        cycle: RequestResponseCycle | None,
        body: bytes,
    ) -> None:
        """Send ``search``'s answer, run on the slot ``got``, or its 503 if its lane
        refused it; ``cycle``: the one it waited in."""
        express = held.express
        if cycle is not None and (cycle.disconnected or self.transport.is_closing()):
            express.abandon(search, got)
            return
        client = self.client[0] if self.client else None
        if isinstance(got, Slot):
            if search.query is None and not express.read(search, body):
                express.left(search)
                self._give(held, cycle, body, got)  # the app serves it on its slot
                return
            content = express.run(search, got, held.headers)
            if content is None:  # the app answers it, with the error it is, on its slot
                self._give(held, cycle, body, got)
                return
            express.done(search, 200, held.started, client)
            head = express.head(content, search.request_id)
        else:
            refusal = express.refused(search, got, held.headers)
            express.done(search, 503, held.started, client)
            content = refusal.content
            head = refusal.header_lines + b"x-request-id: %s\r\n\r\n" % search.request_id.encode()
        keep_alive = held.keep_alive if cycle is None else cycle.keep_alive
        self.transport.write(
            b"".join(
                (
                    OK_LINE if isinstance(got, Slot) else STATUS_LINE,
                    self._defaults(express),
                    b"" if keep_alive else b"connection: close\r\n",
                    head,
                    content,
                )
            )
        )
        if cycle is not None:
            cycle.response_complete = True
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _give(
        self, held: Held, cycle: RequestResponseCycle | None, body: bytes, slot: Slot | None = None
    ) -> None:
        """Give a search to the ASGI app, with the ``slot`` it waited for if it has one;
        ``cycle``: the one it waited in, if it did."""
        granted = None if slot is None else Granted(slot)
        if cycle is None:
            self._to_app(held.lane, body, granted=granted)
            return
        if granted is not None:
            cycle.scope["state"][GRANTED] = granted
        self._entering, self._granted = held.lane, granted
        self._start_asgi_task(cycle, self.app)
        self._entering = self._granted = None

    def _to_app(
        self,
        lane: Lane,
        body: bytes,
        app: ASGI3Application | None = None,
        granted: Granted | None = None,
    ) -> None:
        """Give a held request to the ASGI app (or to ``app``) as if it had just arrived,
        with the admission slot it was ``granted``, if any."""
        if granted is not None:
            self.scope["state"][GRANTED] = granted
        self._entering, self._app, self._granted = lane, app, granted
        super().on_headers_complete()
        self._entering = self._app = self._granted = None
        if self._close_after:
            self.cycle.keep_alive = False
        if body:
            super().on_body(body)
        super().on_message_complete()

    def _defaults(self, express: Express) -> bytes:
        """The server's default header lines (``date``, ``server``), encoded once per
        second and kept on ``express``: the server makes a new list each second."""
        defaults = self.server_state.default_headers
        cached = express.defaults
        if cached is not None and cached[0] is defaults:
            return cached[1]
        lines = b"".join(name + b": " + value + b"\r\n" for name, value in defaults)
        express.defaults = (defaults, lines)
        return lines

    def shutdown(self) -> None:
        if self._held is not None:  # answer the held search first, then close
            self._close_after = True
            return
        super().shutdown()

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
        if self._app is WAITS:
            return  # the express lane answers it (``_answer``)
        if self._app is not None:
            app = self._app
        lane = self._entering
        if lane is not None:  # counted in its lane until its task ends, however it ends
            lane.entered += 1
            app = _counted(app, lane, self._granted)
        super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        if self._held is not None:
            self._held.chunks.append(body)
        elif not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._held is not None:
            self._express(self._held)
        elif not self._refused:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.lane.entered -= 1
        self._parked = None
        super().connection_lost(exc)
        self._count_connections()


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


def _counted(app: ASGI3Application, lane: Lane, granted: Granted | None = None) -> ASGI3Application:
    async def counted(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        try:
            await app(scope, receive, send)
        finally:
            lane.entered -= 1
            if granted is not None:  # a slot no layer took (one refused first): back
                granted.release()

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
