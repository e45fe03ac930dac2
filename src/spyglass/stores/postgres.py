"""The PostgreSQL store: pgvector HNSW per collection, a primary for writes, replicas for reads.

``spyglass_collections`` holds one row per collection (its settings, version,
count and whether its HNSW index exists); each collection's items live in their
own table ``spyglass_items_<cid>``, whose ``vector(dim)`` column carries an HNSW
index with the collection's ``m`` and ``ef_construction`` and whose JSONB
payload has a GIN index for filters. Vectors above 2,000 dimensions (pgvector's
limit for indexing ``vector``) are indexed at half precision and scored in full.
A quantized collection's index holds ``halfvec`` (``half``) or
``binary_quantize`` bits (``binary``); its walk finds ``oversample`` x k
candidates and the full vectors rank them.

Versions come from one sequence, so they grow and are never reused. Writes lock
the collection's row, which keeps the count exact when writers race. Reads run
on a replica when there is one; a replica that lacks a collection or item, or
has not replayed the version a search asks for, hands the read to the primary.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, NamedTuple, NoReturn

import numpy as np
import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from spyglass import filters
from spyglass.errors import ConfigError, Conflict, InvalidRequest, NotFound, Unavailable
from spyglass.keywords import tsquery
from spyglass.stores.base import (
    CollectionInfo,
    CollectionSpec,
    Hit,
    IndexParams,
    Item,
    KeywordQuery,
    Query,
    Store,
    StoredFile,
)
from spyglass.stores.pg_pools import (
    DRIVER_ERRORS,
    Connection,
    Pools,
    Server,
    Stale,
    configure,
    connection_options,
)
from spyglass.stores.pg_schema import migrate

log = logging.getLogger(__name__)

COLUMNS = (
    "cid, name, dim, metric, encoder, m, ef_construction, ef_search, options, created_at,"
    " version, count, indexed, quantization, rescore, oversample, recall_target"
)
DISTANCE = {"cosine": "<=>", "ip": "<#>", "l2": "<->"}
HALFVEC_ABOVE = 2000
"""pgvector indexes ``vector`` up to 2,000 dimensions and ``halfvec`` up to 4,000."""
MAX_EF_SEARCH = 1000
MAX_INDEXED_DIM = 4000
COPY_ABOVE = 64
"""Batches larger than this are written with binary COPY through a staging table."""
POLL_S = 0.005
SETTINGS = (
    "SELECT set_config('enable_indexscan', %s, true), set_config('hnsw.ef_search', %s, true),"
    " set_config('hnsw.iterative_scan', 'relaxed_order', true)"
)
"""One query's planner and HNSW settings, for the rest of its transaction only."""
TSV_COLUMN = "tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', coalesce(text, ''))) STORED"
"""The full-text column of every collection table (GIN-indexed), kept by PostgreSQL."""
KEYWORD_SQL = (
    "SELECT id, text, payload, ts_rank(tsv, q, 1) AS rank"
    " FROM {t}, to_tsquery('english', %s) AS q WHERE tsv @@ q AND {where}"
    " ORDER BY rank DESC, id LIMIT %s"
)
"""Items holding any term of the query, by ``ts_rank`` scaled down for long texts."""
STATE_AND_SETTINGS = (
    f"SELECT s.*, c.cid, c.version, c.count, c.indexed FROM ({SETTINGS}) s"
    " LEFT JOIN spyglass_collections c ON c.name = %s"
)
"""The first query's settings and the collection's (cid, version, count, indexed)."""


class Layout(NamedTuple):
    """What a search of a collection needs before it starts. ``cid``, ``dim``, ``metric``
    and ``ef_search`` never change for a cid; ``items`` and ``indexed`` are as last seen,
    and only choose between exact and HNSW search."""

    name: str
    cid: int
    dim: int
    metric: str
    ef_search: int
    items: int
    indexed: bool
    quantization: str
    oversample: float
    """Candidates per result the index walk finds for the full vectors to rank (0: k)."""


class PostgresStore(Store):
    """Collections in PostgreSQL with pgvector, shared by every instance that opens the URL."""

    quantizations = ("none", "half", "binary")

    def __init__(
        self,
        url: str,
        replicas: Sequence[str] = (),
        *,
        pool_size: int = 10,
        timeout_s: float = 5.0,
        statement_timeout_s: float = 30.0,
        replica_wait_s: float = 0.5,
        replica_retry_s: float = 5.0,
        exact_below: int = 5000,
        build_memory_mb: int = 512,
    ) -> None:
        try:
            with psycopg.connect(url, **connection_options(timeout_s, statement_timeout_s)) as conn:
                migrate(conn)
        except DRIVER_ERRORS as exc:
            raise ConfigError(f"cannot use the PostgreSQL store: {exc}".strip()) from exc
        except psycopg.ProgrammingError as exc:  # a malformed URL: its text may hold the password
            raise ConfigError("the PostgreSQL store URL does not parse") from exc
        except psycopg.Error as exc:  # no right to create tables or the extension, ...
            raise ConfigError(f"cannot prepare the PostgreSQL store: {exc}".strip()) from exc
        self.pools = Pools(
            url,
            list(replicas),
            size=pool_size,
            timeout_s=timeout_s,
            statement_timeout_s=statement_timeout_s,
            retry_s=replica_retry_s,
        )
        self.replica_wait_s = replica_wait_s
        self.exact_below = exact_below
        self.build_memory_mb = build_memory_mb
        self._local = threading.local()
        self._layouts: dict[str, Layout] = {}
        self._statements: dict[tuple[int, bool, bool], str] = {}
        self._build_lock = threading.Lock()
        self._builders: dict[str, threading.Thread] = {}

    # collections

    def create_collection(self, spec: CollectionSpec) -> tuple[CollectionInfo, bool]:
        self.check_quantization(spec)
        _check_index(spec)
        with self.pools.write() as conn:
            row = conn.execute(
                "INSERT INTO spyglass_collections (name, dim, metric, encoder, m,"
                " ef_construction, ef_search, options, created_at, quantization, rescore,"
                " oversample, recall_target, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s, %s, %s, %s, nextval('spyglass_seq'))"
                f" ON CONFLICT (name) DO NOTHING RETURNING {COLUMNS}",
                (
                    spec.name,
                    spec.dim,
                    spec.metric,
                    spec.encoder,
                    spec.index.m,
                    spec.index.ef_construction,
                    spec.index.ef_search,
                    Jsonb(spec.options),
                    time.time(),
                    spec.index.quantization,
                    spec.index.rescore,
                    spec.index.oversample,
                    spec.index.recall_target,
                ),
            ).fetchone()
            if row is None:
                existing = _info(_require(conn, spec.name))
                if existing.spec != spec:
                    raise Conflict(
                        f"collection {spec.name!r} exists with other settings", field="name"
                    )
                return existing, False
            table = _table(row[0])
            conn.execute(
                sql.SQL(
                    'CREATE TABLE {t} (id text COLLATE "C" PRIMARY KEY,'
                    " embedding vector({d}) NOT NULL,"
                    " text text, payload jsonb NOT NULL DEFAULT '{{}}', {tsv})"
                ).format(t=table, d=sql.Literal(spec.dim), tsv=sql.SQL(TSV_COLUMN))
            )
            conn.execute(
                sql.SQL("CREATE INDEX {i} ON {t} USING gin (tsv)").format(
                    i=sql.Identifier(f"spyglass_items_{row[0]}_tsv"), t=table
                )
            )
            conn.execute(
                sql.SQL("CREATE INDEX {i} ON {t} USING gin (payload jsonb_path_ops)").format(
                    i=sql.Identifier(f"spyglass_items_{row[0]}_payload"), t=table
                )
            )
            conn.execute(_hnsw_ddl(row[0], spec))
        return _info(row), True

    def get_collection(self, name: str) -> CollectionInfo:
        def work(conn: Connection, server: Server) -> CollectionInfo:
            return _info(_require(conn, name, server))

        return self.pools.read(work)

    def list_collections(self) -> list[CollectionInfo]:
        def work(conn: Connection, server: Server) -> list[CollectionInfo]:
            rows = conn.execute(
                f'SELECT {COLUMNS} FROM spyglass_collections ORDER BY name COLLATE "C"'
            ).fetchall()
            return [_info(row) for row in rows]

        return self.pools.read(work)

    def delete_collection(self, name: str) -> None:
        with self.pools.write() as conn:
            row = conn.execute(
                "DELETE FROM spyglass_collections WHERE name = %s RETURNING cid", (name,)
            ).fetchone()
            if row is None:
                raise NotFound(f"collection {name!r} not found", field="name")
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=_table(row[0])))
            conn.execute("DELETE FROM spyglass_files WHERE cid = %s", (row[0],))

    # items

    def upsert(self, name: str, items: Sequence[Item]) -> int:
        latest = {item.id: item for item in items}
        bulk = self._bulk_depth() > 0
        with self.pools.write() as conn:
            cid, dim, count, indexed = _lock(conn, name)
            for i, item in enumerate(latest.values()):
                if len(item.vector) != dim:  # the engine checked a replica's view: recheck
                    raise InvalidRequest(
                        f"vector has {len(item.vector)} dimensions; collection {name!r} has {dim}",
                        field=f"items[{i}].vector",
                    )
            table = _table(cid)
            if bulk and count == 0 and indexed:
                # An empty collection about to be loaded: build its graph once, at the end.
                conn.execute(sql.SQL("DROP INDEX IF EXISTS {i}").format(i=_hnsw_name(cid)))
                indexed = False
            if count == 0:
                _copy(conn, table, dim, latest.values())
                existed = 0
            elif len(latest) > COPY_ABOVE:
                existed = _merge_staged(conn, table, dim, latest.values())
            else:
                existed = _merge_rows(conn, table, latest.values())
            _write_files(conn, cid, list(latest.values()), replacing=count > 0)
            row = conn.execute(
                "UPDATE spyglass_collections SET version = nextval('spyglass_seq'),"
                " count = count + %s, indexed = %s WHERE cid = %s RETURNING version",
                (len(latest) - existed, indexed, cid),
            ).fetchone()
        assert row is not None
        if not indexed and not bulk:
            self._build_later(name)  # a bulk load that never finished: index it, off the request
        return int(row[0])

    def _build_later(self, name: str) -> None:
        with self._build_lock:
            running = self._builders.get(name)
            if running is not None and running.is_alive():
                return
            thread = threading.Thread(
                target=self._build_quietly, args=(name,), name=f"hnsw-{name}", daemon=True
            )
            self._builders[name] = thread
            thread.start()

    def _build_quietly(self, name: str) -> None:
        try:
            self.optimize(name)
        except NotFound:
            pass
        except Exception:
            log.exception("building the HNSW index of %s failed", name)

    def get_item(self, name: str, item_id: str) -> Item:
        def work(conn: Connection, server: Server) -> Item:
            cid = _require(conn, name, server)[0]
            with _gone(name, server):
                row = conn.execute(
                    sql.SQL("SELECT id, embedding, text, payload FROM {t} WHERE id = %s").format(
                        t=_table(cid)
                    ),
                    (item_id,),
                ).fetchone()
            if row is None:
                if not server.primary:
                    raise Stale
                raise NotFound(f"item {item_id!r} not found in collection {name!r}", field="id")
            return Item(id=row[0], vector=_array(row[1]), text=row[2], payload=row[3])

        return self.pools.read(work)

    def get_file(self, name: str, item_id: str) -> StoredFile:
        def work(conn: Connection, server: Server) -> StoredFile:
            cid = _require(conn, name, server)[0]
            row = conn.execute(
                "SELECT media_type, data FROM spyglass_files WHERE cid = %s AND id = %s",
                (cid, item_id),
            ).fetchone()
            if row is None:
                if not server.primary:
                    raise Stale
                raise NotFound(f"item {item_id!r} of {name!r} has no stored file", field="id")
            return StoredFile(data=bytes(row[1]), media_type=row[0])

        return self.pools.read(work)

    def scan(self, name: str, after: str | None = None, limit: int = 1000) -> list[Item]:
        def work(conn: Connection, server: Server) -> list[Item]:
            cid = _require(conn, name, server)[0]
            with _gone(name, server):
                rows = conn.execute(
                    sql.SQL(
                        "SELECT i.id, i.embedding, i.text, i.payload, f.media_type, f.data"
                        " FROM {t} i LEFT JOIN spyglass_files f ON f.cid = %s AND f.id = i.id"
                        " WHERE i.id > %s ORDER BY i.id LIMIT %s"
                    ).format(t=_table(cid)),
                    (cid, "" if after is None else after, limit),
                ).fetchall()
            return [
                Item(
                    id=r[0],
                    vector=_array(r[1]),
                    text=r[2],
                    payload=r[3],
                    file=None if r[4] is None else StoredFile(bytes(r[5]), r[4]),
                )
                for r in rows
            ]

        return self.pools.on_primary(lambda conn: work(conn, self.pools.primary))

    def delete_items(self, name: str, ids: Sequence[str]) -> tuple[int, int]:
        unique = list(dict.fromkeys(ids))
        with self.pools.write() as conn:
            cid = _lock(conn, name)[0]
            removed = conn.execute(
                sql.SQL("DELETE FROM {t} WHERE id = ANY(%s)").format(t=_table(cid)), (unique,)
            ).rowcount
            conn.execute(
                "DELETE FROM spyglass_files WHERE cid = %s AND id = ANY(%s)", (cid, unique)
            )
            row = conn.execute(
                "UPDATE spyglass_collections SET version = nextval('spyglass_seq'),"
                " count = count - %s WHERE cid = %s RETURNING version",
                (removed, cid),
            ).fetchone()
        assert row is not None
        return removed, int(row[0])

    # search

    def search(
        self, name: str, queries: Sequence[Query], *, min_version: int = 0
    ) -> list[list[Hit]]:
        def work(conn: Connection, server: Server) -> list[list[Hit]]:
            for _ in range(3):  # a collection deleted (perhaps made again) meanwhile: look again
                layout = self._layouts.get(name) or self._layout(conn, name, server)
                try:
                    row, found = self._pipelined(conn, layout, queries)
                except psycopg.errors.UndefinedTable:
                    self._layouts.pop(name, None)
                    continue
                if row is None or row[0] != layout.cid:
                    self._layouts.pop(name, None)
                    if row is None:
                        _missing(name, server)
                    continue
                self._layouts[name] = layout._replace(items=row[2], indexed=row[3])
                if row[1] >= min_version or server.primary:
                    break
                self._await_version(conn, name, min_version)  # Stale past replica_wait_s
            else:
                _missing(name, server)
            hits = []
            for query, rows in zip(queries, found, strict=True):
                exact = self._exact(layout, query)
                if query.filter is not None and not exact and len(rows) < query.k:
                    # The graph walk gave up before k matches (a rare filter): answer exactly.
                    rows = self._pipelined(conn, layout, [replace(query, exact=True)])[1][0]
                hits.append(_hits(layout.metric, query, rows))
            return hits

        return self.pools.read(work)

    def keyword_search(
        self, name: str, queries: Sequence[KeywordQuery], *, min_version: int = 0
    ) -> list[list[Hit]]:
        def work(conn: Connection, server: Server) -> list[list[Hit]]:
            row = _require(conn, name, server)
            if row[10] < min_version and not server.primary:
                self._await_version(conn, name, min_version)
            found: list[list[Hit]] = []
            with _gone(name, server):
                for query in queries:
                    if not query.terms:
                        found.append([])
                        continue
                    where, params = (
                        ("TRUE", [])
                        if query.filter is None
                        else filters.to_postgres(query.filter, "payload")
                    )
                    statement = sql.SQL(KEYWORD_SQL).format(
                        t=_table(row[0]),
                        where=sql.SQL(where),  # compiled from a parsed filter; values are params
                    )
                    rows = conn.execute(
                        statement, (tsquery(query.terms), *params, query.k)
                    ).fetchall()
                    found.append([Hit(r[0], float(r[3]), r[2], r[1]) for r in rows])
            return found

        return self.pools.read(work)

    def _await_version(self, conn: Connection, name: str, version: int) -> None:
        """Wait, by cheap polls, until this replica has replayed ``version`` of ``name``;
        past ``replica_wait_s`` raise ``Stale`` so that the next server is asked."""
        deadline = time.monotonic() + self.replica_wait_s
        while True:
            row = conn.execute(
                "SELECT version FROM spyglass_collections WHERE name = %s", (name,)
            ).fetchone()
            if row is not None and row[0] >= version:
                return
            if time.monotonic() >= deadline:
                raise Stale
            time.sleep(POLL_S)

    def _layout(self, conn: Connection, name: str, server: Server) -> Layout:
        """What searching ``name`` needs to know before it starts (cached per name)."""
        row = _require(conn, name, server)
        layout = Layout(
            name,
            row[0],
            row[2],
            row[3],
            row[7],
            row[11],
            row[12],
            row[13],
            _info(row).spec.index.rescored,
        )
        self._layouts[name] = layout
        return layout

    def _exact(self, layout: Layout, query: Query) -> bool:
        return query.exact or not layout.indexed or layout.items <= self.exact_below

    def _pipelined(
        self, conn: Connection, layout: Layout, queries: Sequence[Query]
    ) -> tuple[tuple[Any, ...] | None, list[list[tuple[Any, ...]]]]:
        """The collection's (cid, version, count, indexed) and each query's rows, in one
        round trip: the statements go as one pipeline inside one transaction, so the
        settings of each query apply to it alone."""
        cursors = []
        state = None
        try:
            # BEGIN and COMMIT queued by hand: conn.transaction() would sync on its own.
            with conn.pipeline():
                conn.execute("BEGIN")
                for query in queries:
                    exact = self._exact(layout, query)
                    settings = (
                        "off" if exact else "on",
                        str(
                            min(
                                MAX_EF_SEARCH,
                                max(query.ef or layout.ef_search, _candidates(layout, query)),
                            )
                        ),
                    )
                    if state is None:  # the first query's settings ride on the state row
                        state = conn.execute(STATE_AND_SETTINGS, (*settings, layout.name))
                    else:
                        conn.execute(SETTINGS, settings)
                    cursors.append(conn.execute(*self._statement(conn, layout, query, exact)))
                conn.execute("COMMIT")
        except BaseException:
            if not conn.broken:
                conn.rollback()
            raise
        row = state.fetchone() if state is not None else None
        return (row[3:] if row and row[3] is not None else None), [c.fetchall() for c in cursors]

    def _statement(
        self, conn: Connection, layout: Layout, query: Query, exact: bool
    ) -> tuple[str | sql.Composed, tuple[Any, ...]]:
        """The search statement and its parameters; those without a filter are rendered
        once per collection."""
        if query.filter is not None:
            where, params = filters.to_postgres(query.filter, "payload")
            return _search_sql(layout, query, exact, where), _params(layout, query, params)
        key = (layout.cid, query.vectors, exact)
        text = self._statements.get(key)
        if text is None:
            text = _search_sql(layout, query, exact, "TRUE").as_string(conn)
            self._statements[key] = text
        return text, _params(layout, query)

    # bulk loads and the index

    @contextmanager
    def bulk(self) -> Iterator[None]:
        self._local.depth = self._bulk_depth() + 1
        try:
            yield
        finally:
            self._local.depth -= 1

    def _bulk_depth(self) -> int:
        depth: int = getattr(self._local, "depth", 0)
        return depth

    def optimize(self, name: str) -> None:
        """Build the collection's HNSW index if a bulk load left it without, and analyze it."""
        with self.pools.write() as conn:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM spyglass_collections WHERE name = %s FOR UPDATE", (name,)
            ).fetchone()
            if row is None:
                raise NotFound(f"collection {name!r} not found", field="name")
            info = _info(row)
            if not row[12]:
                # A build takes minutes on big collections: not bound by the statement timeout.
                conn.execute(
                    "SELECT set_config('maintenance_work_mem', %s, true),"
                    " set_config('statement_timeout', '0', true)",
                    (f"{self.build_memory_mb}MB",),
                )
                conn.execute(_hnsw_ddl(row[0], info.spec))
                conn.execute(
                    "UPDATE spyglass_collections SET indexed = true WHERE cid = %s", (row[0],)
                )
            conn.execute(sql.SQL("ANALYZE {t}").format(t=_table(row[0])))

    def check(self) -> None:
        row = self.pools.on_primary(
            lambda conn: conn.execute("SELECT pg_is_in_recovery()").fetchone()
        )
        if row is None or row[0]:
            raise Unavailable(
                "the store URL names a standby, not the primary (after a failover?)",
                headers={"Retry-After": "1"},
            )

    def close(self) -> None:
        self.pools.close()


def open_connection(url: str, timeout_s: float = 5.0) -> Connection:
    """A plain connection configured like the store's (for tools and tests)."""
    conn = psycopg.connect(url, **connection_options(timeout_s, 3600.0))
    configure(conn)
    return conn


def _search_sql(layout: Layout, query: Query, exact: bool, where: str) -> sql.Composed:
    """The statement of one k-NN query; ``where`` is its compiled filter (or ``TRUE``).

    The inner query walks the index (or scans, when exact) for the best candidates
    (``k``, or ``oversample`` x k for a quantized index); with iterative scans their
    order is only nearly right, so the outer one ranks them by the full vectors,
    equal distances by id, and keeps ``k``.
    A walk of a half-precision index (``half``, or above 2,000 dimensions) ranks by
    ``halfvec``, of a ``binary`` one by the Hamming distance of the sign bits; an
    exact search ranks by the full vector throughout.
    """
    op = sql.SQL(DISTANCE[layout.metric])
    d = sql.Literal(layout.dim)
    if exact:
        rank = sql.SQL("embedding {op} %s").format(op=op)
    elif layout.quantization == "binary":
        rank = sql.SQL("binary_quantize(embedding)::bit({d}) <~> binary_quantize(%s)").format(d=d)
    elif layout.quantization == "half" or layout.dim > HALFVEC_ABOVE:
        rank = sql.SQL("embedding::halfvec({d}) {op} %s::halfvec({d})").format(d=d, op=op)
    else:
        rank = sql.SQL("embedding {op} %s").format(op=op)
    statement = sql.SQL(
        "WITH found AS MATERIALIZED (SELECT id, text, payload, embedding {op} %s AS distance"
        "{vec} FROM {t} WHERE {where} ORDER BY {rank}{ties} LIMIT %s)"
        " SELECT * FROM found ORDER BY distance, id LIMIT %s"
    ).format(
        op=op,
        vec=sql.SQL(", embedding" if query.vectors else ""),
        t=_table(layout.cid),
        where=sql.SQL(where),  # compiled from a parsed filter; values are parameters
        rank=rank,
        # Equal distances go to the smaller id (the column sorts bytewise, COLLATE "C"),
        # also at the k-th place; an index walk must order by the distance alone.
        ties=sql.SQL(", id" if exact else ""),
    )
    return statement


def _candidates(layout: Layout, query: Query) -> int:
    """How many rows the index walk of ``query`` finds for the outer query to rank."""
    if query.exact or layout.quantization == "none" or layout.oversample <= 0:
        return query.k
    return max(query.k, math.ceil(query.k * layout.oversample))


def _params(layout: Layout, query: Query, filter_params: Sequence[object] = ()) -> tuple[Any, ...]:
    """The parameters of ``_search_sql``'s statement, in placeholder order."""
    vector = np.ascontiguousarray(query.vector, dtype=np.float32)
    return (vector, *filter_params, vector, _candidates(layout, query), query.k)


def _hits(metric: str, query: Query, rows: list[tuple[Any, ...]]) -> list[Hit]:
    hits = [Hit(r[0], _score(metric, r[3]), r[2], r[1]) for r in rows]
    if query.vectors:
        for hit, r in zip(hits, rows, strict=True):
            hit.vector = _indexed(metric, _array(r[4]))
    return hits


def _missing(name: str, server: Server | None) -> NoReturn:
    if server is not None and not server.primary:
        raise Stale  # perhaps created after what this replica has replayed
    raise NotFound(f"collection {name!r} not found", field="name")


def _check_index(spec: CollectionSpec) -> None:
    """Refuse, by field, settings pgvector's HNSW cannot build (the embedded store can)."""
    m, ef = spec.index.m, spec.index.ef_construction
    if spec.dim > MAX_INDEXED_DIM and spec.index.quantization != "binary":
        raise InvalidRequest(
            f"dim is {spec.dim}; the PostgreSQL store indexes at most {MAX_INDEXED_DIM}"
            " dimensions (pgvector halfvec)",
            field="dim",
        )
    if not 2 <= m <= 100:
        raise InvalidRequest(f"index.m is {m}; pgvector takes 2 to 100", field="index.m")
    if not max(4, 2 * m) <= ef <= 1000:
        raise InvalidRequest(
            f"index.ef_construction is {ef}; pgvector takes {max(4, 2 * m)} (2 x m) to 1000",
            field="index.ef_construction",
        )


@contextmanager
def _gone(name: str, server: Server) -> Iterator[None]:
    """A collection table dropped under a read: the collection was deleted meanwhile."""
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        if not server.primary:
            raise Stale from exc
        raise NotFound(f"collection {name!r} not found", field="name") from exc


def _table(cid: int) -> sql.Identifier:
    return sql.Identifier(f"spyglass_items_{cid}")


def _hnsw_name(cid: int) -> sql.Identifier:
    return sql.Identifier(f"spyglass_items_{cid}_hnsw")


def _hnsw_ddl(cid: int, spec: CollectionSpec) -> sql.Composed:
    d = sql.Literal(spec.dim)
    column: sql.Composable
    if spec.index.quantization == "binary":
        column = sql.SQL("(binary_quantize(embedding)::bit({d}))").format(d=d)
        ops = sql.SQL("bit_hamming_ops")
    elif spec.index.quantization == "half" or spec.dim > HALFVEC_ABOVE:
        column = sql.SQL("(embedding::halfvec({d}))").format(d=d)
        ops = sql.SQL(f"halfvec_{spec.metric}_ops")
    else:
        column = sql.SQL("embedding")
        ops = sql.SQL(f"vector_{spec.metric}_ops")
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {i} ON {t} USING hnsw ({c} {ops})"
        " WITH (m = {m}, ef_construction = {ef})"
    ).format(
        i=_hnsw_name(cid),
        t=_table(cid),
        c=column,
        ops=ops,
        m=sql.Literal(spec.index.m),
        ef=sql.Literal(spec.index.ef_construction),
    )


def _copy(conn: Connection, table: sql.Identifier, dim: int, items: Any) -> None:
    """Binary COPY of ``items`` into ``table`` (which holds none of their ids)."""
    statement = sql.SQL(
        "COPY {t} (id, embedding, text, payload) FROM STDIN WITH (FORMAT BINARY)"
    ).format(t=table)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(["text", "vector", "text", "jsonb"])
        for item in items:
            copy.write_row(
                (
                    item.id,
                    np.ascontiguousarray(item.vector, dtype=np.float32),
                    item.text,
                    Jsonb(item.payload),
                )
            )


def _merge_staged(conn: Connection, table: sql.Identifier, dim: int, items: Any) -> int:
    """Upsert a large batch through a COPY-filled staging table; how many ids existed."""
    conn.execute(
        sql.SQL(
            'CREATE TEMP TABLE spyglass_staging (id text COLLATE "C", embedding vector({d}),'
            " text text, payload jsonb) ON COMMIT DROP"
        ).format(d=sql.Literal(dim))
    )
    staging = sql.Identifier("spyglass_staging")
    _copy(conn, staging, dim, items)
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {t} JOIN {s} USING (id)").format(t=table, s=staging)
    ).fetchone()
    conn.execute(
        sql.SQL(
            "INSERT INTO {t} (id, embedding, text, payload) SELECT id, embedding, text, payload"
            " FROM {s} ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding,"
            " text = EXCLUDED.text, payload = EXCLUDED.payload"
        ).format(t=table, s=staging)
    )
    conn.execute(sql.SQL("DROP TABLE {s}").format(s=staging))
    return int(row[0]) if row else 0


def _write_files(conn: Connection, cid: int, items: Sequence[Item], *, replacing: bool) -> None:
    """Replace the stored files of ``items``: an item written without one loses its old.
    ``replacing`` is False when the collection was empty, so no old file can exist."""
    if replacing:
        conn.execute(
            "DELETE FROM spyglass_files WHERE cid = %s AND id = ANY(%s)",
            (cid, [item.id for item in items]),
        )
    files = [(cid, item.id, item.file.media_type, item.file.data) for item in items if item.file]
    if files:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO spyglass_files (cid, id, media_type, data) VALUES (%s, %s, %s, %s)",
                files,
            )


def _merge_rows(conn: Connection, table: sql.Identifier, items: Any) -> int:
    """Upsert a small batch row by row (pipelined); how many ids existed."""
    batch = list(items)
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {t} WHERE id = ANY(%s)").format(t=table),
        ([item.id for item in batch],),
    ).fetchone()
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL(
                "INSERT INTO {t} (id, embedding, text, payload) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding,"
                " text = EXCLUDED.text, payload = EXCLUDED.payload"
            ).format(t=table),
            [
                (
                    item.id,
                    np.ascontiguousarray(item.vector, dtype=np.float32),
                    item.text,
                    Jsonb(item.payload),
                )
                for item in batch
            ],
        )
    return int(row[0]) if row else 0


def _lock(conn: Connection, name: str) -> tuple[int, int, int, bool]:
    """(cid, dim, count, indexed) of the collection, its row locked until the transaction ends."""
    row = conn.execute(
        "SELECT cid, dim, count, indexed FROM spyglass_collections WHERE name = %s FOR UPDATE",
        (name,),
    ).fetchone()
    if row is None:
        raise NotFound(f"collection {name!r} not found", field="name")
    return int(row[0]), int(row[1]), int(row[2]), bool(row[3])


def _require(conn: Connection, name: str, server: Server | None = None) -> tuple[Any, ...]:
    row: tuple[Any, ...] | None = conn.execute(
        f"SELECT {COLUMNS} FROM spyglass_collections WHERE name = %s", (name,)
    ).fetchone()
    if row is None:
        _missing(name, server)
    return row


def _info(row: tuple[Any, ...]) -> CollectionInfo:
    spec = CollectionSpec(
        name=row[1],
        dim=row[2],
        metric=row[3],
        encoder=row[4],
        index=IndexParams(
            m=row[5],
            ef_construction=row[6],
            ef_search=row[7],
            quantization=row[13],
            rescore=row[14],
            oversample=row[15],
            recall_target=row[16],
        ),
        options=row[8] if isinstance(row[8], dict) else orjson.loads(row[8]),
    )
    return CollectionInfo(spec=spec, count=int(row[11]), version=int(row[10]), created_at=row[9])


def _array(value: Any) -> np.ndarray:
    """A loaded ``vector`` (pgvector's ``Vector``, or a sequence) as float32."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def _score(metric: str, distance: float) -> float:
    """pgvector distances as Spyglass scores: higher is more similar."""
    return 1.0 - distance if metric == "cosine" else -distance


def _indexed(metric: str, vector: np.ndarray) -> np.ndarray:
    if metric != "cosine":
        return vector
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector
