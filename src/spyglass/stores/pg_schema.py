"""The PostgreSQL store's schema, created and upgraded by versioned migrations.

Each migration runs once, in order, in its own transaction under a transaction-level
advisory lock, so several instances starting at once against an empty database
neither race nor fail: the first creates, the others wait and find it done.
Collection tables (``spyglass_items_<cid>``) are made by the store, not here,
because their vector column has the collection's dimension.
"""

from __future__ import annotations

from typing import Any

import psycopg

from spyglass.errors import ConfigError

PGVECTOR_MIN = (0, 8)
MIGRATION_LOCK = 0x5350_5947  # "SPYG": pg_advisory_xact_lock key shared by every instance

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE EXTENSION IF NOT EXISTS vector;
    CREATE SEQUENCE spyglass_seq;
    CREATE TABLE spyglass_collections (
        cid bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
        name text NOT NULL UNIQUE,
        dim integer NOT NULL,
        metric text NOT NULL,
        encoder text NOT NULL,
        m integer NOT NULL,
        ef_construction integer NOT NULL,
        ef_search integer NOT NULL,
        options jsonb NOT NULL DEFAULT '{}',
        created_at double precision NOT NULL,
        version bigint NOT NULL,
        count bigint NOT NULL DEFAULT 0,
        indexed boolean NOT NULL DEFAULT true
    );
    """,
    """
    CREATE TABLE spyglass_keys (
        id text PRIMARY KEY,
        hash text NOT NULL UNIQUE,
        tenant text NOT NULL,
        scopes text NOT NULL,
        label text NOT NULL,
        created_at double precision NOT NULL,
        revoked_at double precision
    );
    CREATE TABLE spyglass_keys_version (version bigint NOT NULL);
    INSERT INTO spyglass_keys_version VALUES (0);
    """,
    # keyword search: a generated tsvector column, GIN-indexed, in every collection table
    """
    DO $$
    DECLARE
        collection record;
    BEGIN
        FOR collection IN SELECT cid FROM spyglass_collections LOOP
            EXECUTE format(
                'ALTER TABLE spyglass_items_%1$s ADD COLUMN IF NOT EXISTS tsv tsvector'
                ' GENERATED ALWAYS AS (to_tsvector(''english'', coalesce(text, ''''))) STORED',
                collection.cid
            );
            EXECUTE format(
                'CREATE INDEX IF NOT EXISTS spyglass_items_%1$s_tsv'
                ' ON spyglass_items_%1$s USING gin (tsv)',
                collection.cid
            );
        END LOOP;
    END
    $$;
    """,
    # the files items were made from (images), apart so reading items never reads them
    """
    CREATE TABLE IF NOT EXISTS spyglass_files (
        cid bigint NOT NULL,
        id text COLLATE "C" NOT NULL,
        media_type text NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (cid, id)
    );
    """,
    # how the index stores vectors (quantization) and re-ranks its candidates
    """
    ALTER TABLE spyglass_collections
        ADD COLUMN IF NOT EXISTS quantization text NOT NULL DEFAULT 'none',
        ADD COLUMN IF NOT EXISTS rescore boolean NOT NULL DEFAULT true,
        ADD COLUMN IF NOT EXISTS oversample double precision NOT NULL DEFAULT 1.0,
        ADD COLUMN IF NOT EXISTS recall_target double precision NOT NULL DEFAULT 0.95;
    """,
)


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Apply the migrations this database lacks; return the schema version.

    A database upgraded by a newer Spyglass is refused rather than misread.
    """
    done = 0
    for number, script in enumerate(MIGRATIONS, start=1):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS spyglass_schema (version integer NOT NULL)")
            row = conn.execute("SELECT max(version) FROM spyglass_schema").fetchone()
            done = row[0] if row and row[0] is not None else 0
            if done >= number:
                continue
            conn.execute(script)
            conn.execute("INSERT INTO spyglass_schema (version) VALUES (%s)", (number,))
            done = number
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    found = tuple(int(part) for part in str(row[0] if row else "0").split(".")[:2])
    if found < PGVECTOR_MIN:
        raise ConfigError(
            f"pgvector {row[0] if row else '(none)'} is installed; Spyglass needs 0.8 or newer"
            " (iterative index scans): ALTER EXTENSION vector UPDATE"
        )
    if done > len(MIGRATIONS):
        raise ConfigError(
            f"the database has schema version {done}, newer than this Spyglass knows"
            f" ({len(MIGRATIONS)}); upgrade Spyglass"
        )
    return done
