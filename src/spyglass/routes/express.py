"""The express lane: a plain vector search answered by the HTTP protocol itself.

A nearest-neighbour search for a vector costs about 0.3 ms of CPU in the index, and
the ASGI path around it (uvicorn's request cycle and task, a dozen middleware
layers, Starlette's routing, the request and response objects) about 0.8 ms more:
measured with py-spy on one pinned worker. The search is the server's hottest
route, so the HTTP protocol (:mod:`spyglass.overload.http_protocol`) hands it here
once its body is in, and writes the bytes it gets back.

It is the same search with the same outcome, not a second implementation: the
body is validated by :class:`~spyglass.schema.SearchIn`, the caller authenticated
by the same key ring, the slot taken from the same admission lane (waited for in
its queue when none is free, before the body is read, as the app waits), the
engine and its hits those of ``POST /collections/{name}/search``; the answer
carries the same headers (request id, security headers), and the request its
access-log line and its metrics. Only a search the engine would run on the event
loop anyway (:meth:`~spyglass.engine.Engine.runs_inline`), with nothing that
another layer must see (CORS, forwarded-for headers, a rate limit), is answered
here. Anything else, every error included, goes to the ASGI app (with the slot it
waited for, if it waited), which answers it as it answers any other request: the
express lane's only answers of its own are the search's and its lane's 503.

``express_search = false`` sends every search through the ASGI app.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson
from pydantic import ValidationError

from spyglass.auth import keys, tenancy
from spyglass.auth.keys import KeyRing, Principal
from spyglass.errors import ProblemError
from spyglass.middleware.access_log import ACCESS_LOGGER, write_access_line
from spyglass.middleware.admission import Admission, Gate, Slot
from spyglass.middleware.auth import presented_key, required_scope
from spyglass.middleware.metrics import HttpCounts
from spyglass.middleware.request_id import current_request_id, request_id_from
from spyglass.middleware.route_class import collection_of
from spyglass.middleware.security_headers import API_CSP, common_headers
from spyglass.routes.search import hits_json
from spyglass.schema import SearchIn

if TYPE_CHECKING:
    from spyglass.engine import Engine
    from spyglass.middleware.door import Refusal

EXPRESS_STATE = "spyglass.express"
"""The lifespan state key under which the app hands its :class:`Express` to the server."""
ROUTE = "/collections/{name}/search"
MAX_BODY_BYTES = 256 * 1024
"""Larger bodies take the ASGI path, which reads them as a stream under the body limit
(a 4,096-dimension vector in full precision is about 90 kB)."""
HANDS_OFF = frozenset({b"origin", b"forwarded", b"x-forwarded-for", b"x-forwarded-proto"})
"""Headers that another layer acts on (CORS, the proxy headers): such requests take the
ASGI path."""


WAYS = ("answered", "waited", "refused", "to_app")
"""What ``/status`` counts: searches answered here (after a wait for a slot or not),
those that waited for one, those their lane refused, those handed to the ASGI app."""


@dataclass(slots=True, eq=False)
class Search:
    """One search on its way through the express lane: its caller and lane first, its
    query once its body is read (:meth:`Express.read`)."""

    path: str
    name: str
    tenant: str
    lane: str
    gate: Gate
    wall: float = field(default_factory=time.time)
    stored: str = ""
    query: SearchIn | None = None
    request_id: str = ""
    waiting: bool = False
    """In the lane's queue, and in ``spyglass_http_requests_in_flight`` meanwhile."""


class Express:
    """Answers plain vector searches for the HTTP protocol (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        admission: Admission,
        ring: KeyRing,
        counts: HttpCounts,
        *,
        refusals: Mapping[str, Refusal],
        hsts: str | None = None,
        metrics_public: bool = False,
    ) -> None:
        self.engine = engine
        self.refusals = refusals
        self.admission = admission
        self.ring = ring
        self.counts = counts
        self.metrics_public = metrics_public
        self.log = logging.getLogger(ACCESS_LOGGER)
        headers = [
            ("content-type", "application/json"),
            *((name.lower(), value) for name, value in common_headers(hsts)),
            ("content-security-policy", API_CSP),
        ]
        self.header_lines = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("latin-1")
        """The response headers after ``content-length`` and before ``x-request-id``,
        in the order the ASGI path sends them."""
        self.counts_by_way = dict.fromkeys(WAYS, 0)
        """Searches by how the express lane dealt with them (see :data:`WAYS`)."""
        self.defaults: tuple[object, bytes] | None = None
        """The HTTP server's default header lines, with the list they were made from."""

    @staticmethod
    def collection(method: str, path: str) -> str | None:
        """The collection a request searches, if it is ``POST /collections/{name}/search``."""
        name = collection_of(path) if method == "POST" else None
        return name if name is not None and path == f"/collections/{name}/search" else None

    @staticmethod
    def takes(headers: Sequence[tuple[bytes, bytes]]) -> bool:
        """Whether a search with ``headers`` may be answered here: a body of known, modest
        length, and no header that another layer acts on."""
        length = None
        for name, value in headers:
            if name == b"content-length":
                length = value
            elif name in HANDS_OFF or name == b"transfer-encoding":
                return False
        return length is not None and length.isdigit() and int(length) <= MAX_BODY_BYTES

    def start(self, path: str, name: str, headers: list[tuple[bytes, bytes]]) -> Search | None:
        """The search of collection ``name`` by the caller ``headers`` name, in its lane;
        None (counted) if the auth layer would refuse the caller: the app answers."""
        principal = self._principal(path, headers)
        lane, gate = self.admission.gate_for("POST", path)
        if principal is None or gate is None:
            self.counts_by_way["to_app"] += 1
            return None
        return Search(path, name, principal.tenant, lane, gate)

    def read(self, search: Search, body: bytes) -> bool:
        """Whether ``body`` asks for a search to answer here (``search`` then has it);
        False (counted): the app answers."""
        try:
            query = SearchIn.model_validate(orjson.loads(body))
            stored = tenancy.qualified(search.tenant, search.name)
        except (orjson.JSONDecodeError, ValidationError, ProblemError):
            query = None
        if query is None or not self.engine.runs_inline(stored, query):
            self.counts_by_way["to_app"] += 1
            return False
        search.query, search.stored = query, stored
        return True

    @staticmethod
    def free(search: Search) -> bool:
        """Whether ``search``'s lane has a slot free now, with nobody waiting for it."""
        lane = search.gate.lane
        return lane.in_flight < lane.limit and not lane.waiting

    @staticmethod
    def admit(search: Search) -> Slot:
        """A slot that :meth:`free` found, taken as admission would take it."""
        now = time.monotonic()
        admitted = search.gate.lane.arrive(now)
        assert admitted is True, "admit() without a free slot"
        return Slot(search.gate, now, 0.0)

    def reserve(self, search: Search, then: Callable[[Slot | str], None]) -> Slot | str | None:
        """A slot in ``search``'s lane or its refusal now, or None and ``then`` with one
        of them once the wait is over (:meth:`~spyglass.middleware.admission.Gate.reserve`)."""
        got = search.gate.reserve(then)
        if got is None:
            self.counts_by_way["waited"] += 1
            search.waiting = True
            self.counts.metrics.in_flight.inc()
        return got

    def abandon(self, search: Search, got: Slot | str) -> None:
        """Forget ``search``, whose client left while it waited; give back its slot."""
        if isinstance(got, Slot):
            got.drop()
        self.left(search)

    def left(self, search: Search) -> None:
        """``search`` leaves the express lane: the app, or nobody, counts it from here."""
        if search.waiting:
            search.waiting = False
            self.counts.metrics.in_flight.dec()

    def snapshot(self) -> dict[str, int]:
        """The searches by how they went (:data:`WAYS`), for ``/status``."""
        return dict(self.counts_by_way)

    def refused(self, search: Search, reason: str, headers: list[tuple[bytes, bytes]]) -> Refusal:
        """The 503 for ``search``, refused by its lane for ``reason`` (counted)."""
        self.counts_by_way["refused"] += 1
        if self.admission.on_shed is not None:
            self.admission.on_shed(search.lane, reason)
        search.request_id = request_id_from({"headers": headers})
        return self.refusals[search.lane]

    def run(self, search: Search, slot: Slot, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """``search``'s JSON answer, run on the admission ``slot`` it was given (which it
        gives back); None if the engine raised: the ASGI app then answers, with the error
        it is, on the same slot."""
        search.request_id = request_id_from({"headers": headers})
        token = current_request_id.set(search.request_id)
        try:
            started = time.perf_counter()
            assert search.query is not None, "run() before read()"
            engine = self.engine
            hits = engine.search_plain(search.stored, search.query)
            if hits is None:
                hits = engine.search(search.stored, [search.query])[0]
        except Exception:
            self.counts_by_way["to_app"] += 1
            self.left(search)  # the app counts it from here
            return None
        finally:
            current_request_id.reset(token)
        if self.admission.on_admit is not None:
            self.admission.on_admit(search.lane, slot.waited)
        slot.gate.ran_inline(slot)
        took_ms = round((time.perf_counter() - started) * 1000, 3)
        return orjson.dumps({"hits": hits_json(hits), "took_ms": took_ms})

    def head(self, content: bytes, request_id: str) -> bytes:
        """The header lines of a 200 carrying ``content``, from ``content-length`` on,
        with the blank line."""
        return b"".join(
            (
                b"content-length: %d\r\n" % len(content),
                self.header_lines,
                b"x-request-id: ",
                request_id.encode("ascii"),
                b"\r\n\r\n",
            )
        )

    def done(self, search: Search, status: int, started: float, client: str | None) -> None:
        """Count and log ``search``, answered with ``status``, as the middleware would."""
        self.left(search)
        if status == 200:
            self.counts_by_way["answered"] += 1
        seconds = time.perf_counter() - started
        self.counts.record("POST", search.path, ROUTE, status, seconds)
        if self.log.isEnabledFor(logging.INFO):
            write_access_line(
                self.log,
                ts=search.wall,
                request_id=search.request_id,
                method="POST",
                route=ROUTE,
                status=status,
                duration_ms=round(seconds * 1000, 3),
                tenant=search.tenant,
                client=client,
            )

    def _principal(self, path: str, headers: list[tuple[bytes, bytes]]) -> Principal | None:
        """Who asks, as the auth layer would name them; None if it would refuse them."""
        needed = required_scope("POST", path, metrics_public=self.metrics_public)
        presented = presented_key({"headers": headers})
        if presented is None:
            return keys.OPEN if needed is None or self.ring.open else None
        principal = self.ring.authenticate(presented)
        if principal is None or (needed is not None and needed not in principal.scopes):
            return None
        return principal
