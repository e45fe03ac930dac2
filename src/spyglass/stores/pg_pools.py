"""Connection pools to a PostgreSQL primary and its streaming replicas.

Writes go to the primary. Reads go to a healthy replica, round robin; a replica
that fails is skipped for ``retry_s`` and the read moves on to the next one,
then to the primary, so a read fails only when the primary does too. Every
driver or pool error leaves this module as ``Unavailable`` (a 503): a database
that is down or saturated never hangs a request past ``timeout_s``.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import psycopg
from pgvector.psycopg import register_vector
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from spyglass.errors import InvalidRequest, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.Connection[Any]

DRIVER_ERRORS = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.ReadOnlySqlTransaction,
    PoolTimeout,
)
"""What a database that is down, restarting, saturated, too slow or no longer the
primary (after a failover) raises."""


def connection_options(timeout_s: float, statement_timeout_s: float) -> dict[str, Any]:
    """Keyword arguments of every connection the store opens (pooled or not)."""
    return {
        "autocommit": True,
        # Plans must follow the per-transaction settings (enable_indexscan): never cache them.
        "prepare_threshold": None,
        "connect_timeout": max(1, math.ceil(timeout_s)),
        "options": f"-c statement_timeout={max(1, round(statement_timeout_s * 1000))}",
    }


def configure(conn: Connection) -> None:
    """Teach a new connection the vector types (binary COPY included) and fast JSON."""
    register_vector(conn)
    set_json_loads(orjson.loads, conn)


@dataclass
class Server:
    """One PostgreSQL server and its pool; ``down_until`` is when a failed replica is retried."""

    name: str
    pool: ConnectionPool[Connection]
    primary: bool
    down_until: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Pools:
    """The primary and replica pools of one store, with read routing."""

    def __init__(
        self,
        primary: str,
        replicas: list[str],
        *,
        size: int,
        timeout_s: float,
        statement_timeout_s: float,
        retry_s: float,
    ) -> None:
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        kwargs = connection_options(timeout_s, statement_timeout_s)
        self.primary = Server("primary", self._pool(primary, size, kwargs, "primary"), True)
        self.replicas = [
            Server(f"replica {i}", self._pool(url, size, kwargs, f"replica-{i}"), False)
            for i, url in enumerate(replicas, start=1)
        ]
        self._turn = itertools.count()

    def _pool(
        self, url: str, size: int, kwargs: dict[str, Any], name: str
    ) -> ConnectionPool[Connection]:
        return ConnectionPool(
            url,
            min_size=1,
            max_size=size,
            timeout=self.timeout_s,
            kwargs={**kwargs, "application_name": f"spyglass-{name}"},
            configure=configure,
            reconnect_timeout=max(self.timeout_s, self.retry_s),
            name=f"spyglass-{name}",
            open=True,
        )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A working primary connection inside a transaction."""
        with _unavailable(self.primary), self._checked(self.primary) as conn:
            with conn.transaction():
                yield conn

    def on_primary(self, work: Callable[[Connection], T]) -> T:
        """``work`` run on a working primary connection (it opens its own transactions)."""
        with _unavailable(self.primary), self._checked(self.primary) as conn:
            return work(conn)

    @contextmanager
    def _checked(self, server: Server) -> Iterator[Connection]:
        """A connection that answered a ping; stale ones (the server restarted) are dropped.

        Writes pay the ping (one round trip) so that a write never fails on a connection
        that died while idle; reads skip it and recover in ``read`` instead.
        """
        with server.pool.connection() as conn:
            try:
                conn.execute("")
                alive = True
            except DRIVER_ERRORS:
                alive = False
            if alive:
                yield conn
                return
        server.pool.check()
        with server.pool.connection() as conn:
            yield conn

    def read(self, work: Callable[[Connection, Server], T]) -> T:
        """``work`` run on a healthy replica, else on the primary.

        ``work`` may raise ``Stale`` to move on to the next server (a replica that has
        not replayed what the caller needs yet); ``NotFound`` and the like pass through.
        Only a connection that fails makes a replica skipped for ``retry_s``; a statement
        that ran out of time is a 503 at once (on another server it would only run out
        of time again), and a query a replica cancelled to replay WAL moves on. A primary
        connection that died while idle is replaced and the read tried once more.
        """
        for server in self.readers():
            for attempt in (1, 2):
                broken = False
                try:
                    with _refused_data(), server.pool.connection() as conn:
                        try:
                            return work(conn, server)
                        except DRIVER_ERRORS:
                            broken = conn.broken
                            raise
                except Stale:
                    break
                except psycopg.errors.QueryCanceled as exc:
                    raise _as_unavailable(server, exc) from exc
                except psycopg.errors.SerializationFailure:
                    if server.primary:
                        raise
                    break  # a recovery conflict on a replica: not a sign it is down
                except DRIVER_ERRORS as exc:
                    if not server.primary:
                        self._skip(server, exc)
                        break
                    if attempt == 1 and broken:
                        server.pool.check()
                        continue
                    raise _as_unavailable(server, exc) from exc
        raise AssertionError("unreachable: the primary is always the last reader")

    def _skip(self, server: Server, exc: Exception) -> None:
        log.warning("%s failed (%s); skipped for %.0f s", server.name, exc, self.retry_s)
        with server.lock:
            server.down_until = time.monotonic() + self.retry_s
        threading.Thread(
            target=_check_quietly, args=(server.pool,), name="spyglass-pool-check", daemon=True
        ).start()

    def readers(self) -> list[Server]:
        """Healthy replicas, starting with the next in turn, then the primary."""
        now = time.monotonic()
        healthy = [r for r in self.replicas if r.down_until <= now]
        if healthy:
            start = next(self._turn) % len(healthy)
            healthy = healthy[start:] + healthy[:start]
        return [*healthy, self.primary]

    def close(self) -> None:
        for server in [self.primary, *self.replicas]:
            server.pool.close()


def _check_quietly(pool: ConnectionPool[Connection]) -> None:
    """Drop the pool's dead connections (it may have been closed meanwhile)."""
    try:
        pool.check()
    except Exception as exc:  # a closed pool, a server still down: the next read tells
        log.debug("checking %s: %s", pool.name, exc)


class Stale(Exception):
    """A replica has not yet replayed the writes a read must see."""


@contextmanager
def _unavailable(server: Server) -> Iterator[None]:
    try:
        with _refused_data():
            yield
    except DRIVER_ERRORS as exc:
        raise _as_unavailable(server, exc) from exc


@contextmanager
def _refused_data() -> Iterator[None]:
    """Values PostgreSQL cannot hold (a NUL character in a text, a number beyond
    half precision in a wide vector) are the client's to fix: a 422, not a 500."""
    try:
        yield
    except psycopg.DataError as exc:
        reason = exc.diag.message_primary or str(exc).splitlines()[0]
        raise InvalidRequest(f"the database cannot store this value: {reason}") from exc


def _as_unavailable(server: Server, exc: Exception) -> Unavailable:
    if isinstance(exc, PoolTimeout):
        reason = "no connection became free in time"
    elif isinstance(exc, psycopg.errors.QueryCanceled):
        reason = "the statement took longer than store_statement_timeout_s"
    elif isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        reason = "it is read-only (a standby, not the primary)"
    else:
        reason = "it cannot be reached"
    return Unavailable(
        f"the database ({server.name}) is unavailable: {reason}", headers={"Retry-After": "1"}
    )
