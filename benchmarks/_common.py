"""Helpers the benchmark scripts share: paths, the text100k set, stores, servers, /proc.

Not a benchmark itself. Every script puts ``benchmarks/`` first on ``sys.path``
(Python does that for the script's own folder), so ``import _common`` works when
a script is run as ``.venv/bin/python benchmarks/<script>.py``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
OUT = REPO / "benchmarks" / "out"
TEXT_SET = OUT / "text100k"
TEXT_STORE = OUT / "store-text100k"
COLLECTION = "bench"
SPYGLASS = REPO / ".venv" / "bin" / "spyglass"


# the text100k set (made by make_text_set.py)


@dataclass(frozen=True)
class TextSet:
    base: np.ndarray  # (n, 384) float32, unit rows
    query: np.ndarray  # (q, 384) float32, unit rows
    gt: np.ndarray  # (q, 100) int64, exact neighbours by inner product, best first
    texts: list[str]  # base texts, then query texts (ids "b<i>" and "q<i>")

    @property
    def base_texts(self) -> list[str]:
        return self.texts[: len(self.base)]

    @property
    def query_texts(self) -> list[str]:
        return self.texts[len(self.base) :]


def load_text_set(directory: Path = TEXT_SET, *, texts: bool = True) -> TextSet:
    """The set written by make_text_set.py; exits with a hint when it is missing."""
    if not (directory / "gt_ip_neighbors.npy").exists():
        raise SystemExit(
            f"{directory} is missing: run .venv/bin/python benchmarks/make_text_set.py"
        )
    lines: list[str] = []
    if texts:
        with (directory / "texts.jsonl").open(encoding="utf-8") as handle:
            lines = [json.loads(line)["text"] for line in handle]
    return TextSet(
        base=np.load(directory / "base.npy"),
        query=np.load(directory / "query.npy"),
        gt=np.load(directory / "gt_ip_neighbors.npy"),
        texts=lines,
    )


def item_id(index: int) -> str:
    """The item id of base row ``index`` in every store the benchmarks build."""
    return f"b{index}"


def build_text_store(
    data_dir: Path = TEXT_STORE, *, encoder: str = "text", batch: int = 1000, rebuild: bool = False
) -> Path:
    """A data dir whose collection ``bench`` (``encoder``, cosine) holds text100k.

    Vectors are supplied directly (no encoding), with the sentence as the item's
    text; the HNSW snapshot is built with ``optimize``. Reused when it already
    holds every item and a snapshot, so the scripts that need it share one copy.
    """
    from spyglass.stores.base import CollectionSpec, Item
    from spyglass.stores.embedded import EmbeddedStore

    data = load_text_set()
    if data_dir.exists() and not rebuild and store_ready(data_dir, len(data.base)):
        return data_dir
    if data_dir.exists():
        import shutil

        shutil.rmtree(data_dir)
    started = time.perf_counter()
    store = EmbeddedStore(data_dir, exact_below=0)
    try:
        store.create_collection(CollectionSpec(name=COLLECTION, dim=384, encoder=encoder))
        texts = data.base_texts
        for start in range(0, len(data.base), batch):
            stop = min(start + batch, len(data.base))
            store.upsert(
                COLLECTION,
                [
                    Item(id=item_id(i), vector=data.base[i], text=texts[i])
                    for i in range(start, stop)
                ],
            )
        loaded = time.perf_counter()
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # build on every core
        try:
            store.optimize(COLLECTION)
        finally:
            faiss.omp_set_num_threads(threads)
        print(
            f"built {data_dir}: {len(data.base)} items upserted in {loaded - started:.1f} s, "
            f"HNSW snapshot in {time.perf_counter() - loaded:.1f} s",
            flush=True,
        )
    finally:
        store.close()
    return data_dir


def store_ready(data_dir: Path, count: int) -> bool:
    """Whether this code opens the data dir's snapshot and finds all ``count`` items in it.

    A snapshot written by an older format, or items newer than it, would make the
    benchmarks measure exact search over the tail, so the caller rebuilds instead.
    """
    from spyglass.stores.embedded import EmbeddedStore

    try:
        # thresholds so high that opening the view never starts a background build
        store = EmbeddedStore(data_dir, snapshot_tail=2**62, exact_below=2**62)
    except Exception:  # unusable: rebuild
        return False
    try:
        view = store._sync(COLLECTION)
        snapshot = view.snapshot
        return snapshot is not None and snapshot.size == count and view.tail_size == 0
    except Exception:  # missing collection or unreadable: rebuild
        return False
    finally:
        store.close()


def code_version() -> str:
    """The commit of the code under test, and whether src/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"HEAD {head}" + (f" + uncommitted src changes: {', '.join(changed)}" if changed else "")


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all cores busy over ``seconds`` (from /proc/stat), 0.0-1.0."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


class CpuWatch:
    """How busy the whole machine was while a block ran, and how much was not ours.

    ``others`` is the CPU time (in cores, averaged over the block) used by every
    process except this one and the children it waited for in the block: it tells
    whether another session's work shared the 2 cores with the measurement.
    """

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids = list(pids)  # running processes (e.g. a server) that count as ours

    def _ours(self) -> float:
        return _own_cpu() + sum(proc_cpu(pid) for pid in self.pids)

    def __enter__(self) -> CpuWatch:
        self._stat0 = _busy_jiffies()
        self._self0 = self._ours()
        self._wall0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._wall0
        busy = (_busy_jiffies() - self._stat0) / os.sysconf("SC_CLK_TCK")
        own = self._ours() - self._self0
        self.wall = wall
        self.ours = own / wall if wall else 0.0
        self.others = max(busy - own, 0.0) / wall if wall else 0.0

    def __str__(self) -> str:
        return (
            f"CPU during the run: ours {self.ours:.2f} cores, other processes "
            f"{self.others:.2f} cores{' (CONTENDED)' if self.others > 0.2 else ''}"
        )


def _busy_jiffies() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:8]]
    return sum(fields) - fields[3] - fields[4]


def proc_cpu(pid: int) -> float:
    """utime + stime of a live process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def wait_for_idle(limit: float = 0.15, max_wait: float = 300.0) -> None:
    """Wait (up to ``max_wait`` s) until the machine is idle, so timings are not shared.

    Other sessions on the same 2 cores (tests, other benchmarks) would skew every
    figure; the wait and the load found are printed so a reader can tell.
    """
    started = time.monotonic()
    busy = cpu_busy()
    while busy > limit and time.monotonic() - started < max_wait:
        print(
            f"machine busy ({busy * 100:.0f}% CPU used by other processes); waiting...", flush=True
        )
        time.sleep(4)
        busy = cpu_busy()
    waited = time.monotonic() - started
    state = "idle" if busy <= limit else "STILL BUSY, figures are skewed"
    print(
        f"CPU before the run: {busy * 100:.0f}% busy ({state}; waited {waited:.0f} s)", flush=True
    )


def snapshot_file(data_dir: Path) -> Path:
    """The newest ``hnsw-<seq>.faiss`` of the data dir's only collection."""
    files = sorted(
        (data_dir / "index").glob("*/hnsw-*.faiss"),
        key=lambda p: int(p.stem.split("-")[1]),
    )
    if not files:
        return data_dir / "index" / "missing.faiss"
    return files[-1]


# recall


def recall_at(found: Sequence[Sequence[int]], truth: np.ndarray, k: int) -> float:
    """Mean over queries of |found[:k] ∩ truth[:k]| / k."""
    total = 0
    for row, expected in zip(found, truth, strict=True):
        total += len(set(row[:k]) & set(expected[:k].tolist()))
    return total / (k * len(found))


# servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """``spyglass serve`` in a subprocess, stopped (SIGINT, then SIGKILL) on exit.

    ``cpus``: run it on those cores only (``taskset -c``); ``log_level``: ``info``
    (the default a user gets) writes the access log, ``warning`` leaves it out."""

    def __init__(
        self,
        data_dir: Path,
        workers: int,
        port: int | None = None,
        *,
        cpus: str | None = None,
        log_level: str = "info",
        **env: str,
    ) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.port = port or free_port()
        self.cpus = cpus
        self.log_level = log_level
        self.log = OUT / f"serve-{self.port}.log"
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        OUT.mkdir(parents=True, exist_ok=True)
        command = [
            *([] if self.cpus is None else ["taskset", "-c", self.cpus]),
            str(SPYGLASS),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--log-level",
            self.log_level,
        ]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {self.log}")
            try:
                status, _ = self.request("GET", "/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise SystemExit(f"server not ready after {timeout:.0f} s; see {self.log}")

    def request(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        """One request on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"content-type": "application/json"} if body is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def pids(self) -> list[int]:
        """The server's process and all its descendants."""
        assert self.proc is not None
        return [self.proc.pid, *descendants(self.proc.pid)]

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid``, from /proc/<pid>/task/*/children."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            found.extend(descendants(child))
    return found


# /proc memory


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, RssShmem (status) and Pss, Pss_Anon, Pss_File (smaps_rollup), kB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "RssAnon", "RssFile", "RssShmem"}:
            values[key] = int(rest.split()[0])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        if key in {"Pss", "Pss_Anon", "Pss_File", "Rss"}:
            values[key] = int(rest.split()[0])
    return values


def command_line(pid: int) -> str:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


def python() -> str:
    return sys.executable
