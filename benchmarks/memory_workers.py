"""Server memory with 1, 2 and 4 workers on text100k: does each extra worker add under the index?

For each worker count, starts ``spyglass serve --workers N`` on
benchmarks/out/store-text100k, waits for /readyz, then sends ``--searches``
vector searches (default 200), each on a fresh connection followed on that
same connection by ``GET /livez`` (which names the worker's pid), so every
worker is seen to have searched the index. Then it reads, for the master and
every descendant process, VmRSS / RssAnon / RssFile from /proc/<pid>/status and
Pss / Pss_Anon / Pss_File from /proc/<pid>/smaps_rollup. Pss divides each
shared page (the mmapped snapshot in the page cache, shared libraries) among
the processes mapping it, so the Pss sum is the memory the server really holds.

Also prints the snapshot's file size (hnsw-<seq>.faiss + labels-<seq>.npy) and
the per-extra-worker growth of the sums, to compare with it. A warm-up pass
first reads the snapshot file once so the page cache is not the variable.

    .venv/bin/python benchmarks/memory_workers.py
    .venv/bin/python benchmarks/memory_workers.py --workers 1 2 4 --searches 200
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
from collections import Counter
from pathlib import Path

from _common import (
    COLLECTION,
    TEXT_STORE,
    Server,
    build_text_store,
    code_version,
    command_line,
    load_text_set,
    proc_memory,
    snapshot_file,
    wait_for_idle,
)

KEYS = ("VmRSS", "RssAnon", "RssFile", "Pss", "Pss_Anon", "Pss_File")


def search_and_name_worker(port: int, body: str) -> int:
    """One search and one /livez on a fresh connection; the pid of the worker that served."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            f"/collections/{COLLECTION}/search",
            body=body,
            headers={"content-type": "application/json"},
        )
        response = conn.getresponse()
        payload = json.loads(response.read())
        if response.status != 200 or len(payload["hits"]) != 10:
            raise SystemExit(f"search failed: {response.status} {payload}")
        conn.request("GET", "/livez")
        response = conn.getresponse()
        return int(json.loads(response.read())["checks"]["pid"])
    finally:
        conn.close()


def mib(kib: int) -> str:
    return f"{kib / 1024:7.1f}"


def measure(workers: int, bodies: list[str], searches: int, data_dir: Path) -> dict[str, int]:
    with Server(data_dir, workers) as server:
        served: Counter[int] = Counter()
        started = time.perf_counter()
        for n in range(searches):
            served[search_and_name_worker(server.port, bodies[n % len(bodies)])] += 1
        elapsed = time.perf_counter() - started
        time.sleep(0.5)
        pids = server.pids()
        print(
            f"\n--workers {workers}: {searches} searches on fresh connections in "
            f"{elapsed:.1f} s; served per worker pid: {dict(served)}"
        )
        print(f"  {'process':<28} " + " ".join(f"{k:>8}" for k in KEYS) + "   (MiB)")
        totals = dict.fromkeys(KEYS, 0)
        worker_totals = dict.fromkeys(KEYS, 0)
        for pid in pids:
            mem = proc_memory(pid)
            cmd = command_line(pid)
            if pid == pids[0]:
                role = "master (spyglass serve)"
            elif "spawn_main" in cmd:
                role = f"worker{' (served)' if pid in served else ' (idle!)'}"
            elif "resource_tracker" in cmd:
                role = "resource tracker"
            else:
                role = "other"
            for key in KEYS:
                totals[key] += mem.get(key, 0)
                if role.startswith("worker"):
                    worker_totals[key] += mem.get(key, 0)
            print(
                f"  {role + ' ' + str(pid):<28} "
                + " ".join(f"{mib(mem.get(k, 0)):>8}" for k in KEYS)
            )
        print(f"  {'SUM':<28} " + " ".join(f"{mib(totals[k]):>8}" for k in KEYS))
        missing = [
            pid for pid in pids[1:] if "spawn_main" in command_line(pid) and pid not in served
        ]
        if missing:
            print(f"  warning: workers {missing} served no search")
        return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument(
        "--encoder",
        choices=["text", "none"],
        default="text",
        help='collection encoder; "text" makes every worker load MiniLM, '
        '"none" (a second data dir) shows the index alone',
    )
    args = parser.parse_args()
    print(f"code under test: {code_version()}", flush=True)
    wait_for_idle()

    data = load_text_set(texts=False)
    data_dir = (
        TEXT_STORE
        if args.encoder == "text"
        else TEXT_STORE.with_name(f"{TEXT_STORE.name}-{args.encoder}")
    )
    build_text_store(data_dir, encoder=args.encoder)
    print(f"data dir {data_dir} (collection encoder {args.encoder!r})")
    snapshot = snapshot_file(data_dir)
    seq = snapshot.stem.split("-")[1]
    files = sorted(snapshot.parent.glob(f"*-{seq}.*"))  # hnsw, labels (+ records, offsets)
    index_kib = snapshot.stat().st_size // 1024
    snapshot_kib = sum(f.stat().st_size for f in files) // 1024
    db = data_dir / "spyglass.db"
    print(
        "snapshot files: "
        + ", ".join(f"{f.name} {f.stat().st_size / 2**20:.1f} MiB" for f in files)
        + f"; total {snapshot_kib / 1024:.1f} MiB; vectors alone "
        f"{data.base.nbytes / 2**20:.1f} MiB; spyglass.db {db.stat().st_size / 2**20:.1f} MiB"
    )
    for f in files:
        f.read_bytes()  # into the page cache, so every run starts from the same state
    bodies = [json.dumps({"vector": [float(x) for x in v], "k": 10}) for v in data.query[:200]]
    sums = {w: measure(w, bodies, args.searches, data_dir) for w in args.workers}

    base_workers = args.workers[0]
    print(f"\nsummary (MiB; index file {index_kib / 1024:.1f} MiB):")
    print(
        f"{'workers':>8} {'VmRSS sum':>10} {'Pss sum':>10} {'RssAnon':>10} "
        f"{'dPss/extra worker':>18} {'dRSS/extra worker':>18}"
    )
    for workers, total in sums.items():
        extra = workers - base_workers
        dpss = (total["Pss"] - sums[base_workers]["Pss"]) / extra if extra else 0.0
        drss = (total["VmRSS"] - sums[base_workers]["VmRSS"]) / extra if extra else 0.0
        print(
            f"{workers:>8} {mib(total['VmRSS']):>10} {mib(total['Pss']):>10} "
            f"{mib(total['RssAnon']):>10} {mib(int(dpss)):>18} {mib(int(drss)):>18}"
        )
    # with 1 worker uvicorn serves from the master process itself, so 1 -> 2 also adds a
    # master and multiprocessing's resource tracker: compare the two largest counts instead
    counts = sorted(args.workers)
    top = counts[-1]
    low = counts[-2] if len(counts) > 1 else counts[0]
    if top > low:
        per_worker = (sums[top]["Pss"] - sums[low]["Pss"]) / (top - low)
        anon = (sums[top]["RssAnon"] - sums[low]["RssAnon"]) / (top - low)
        print(
            f"from {low} to {top} workers: +{per_worker / 1024:.1f} MiB Pss and "
            f"+{anon / 1024:.1f} MiB private anonymous memory per extra worker"
        )
        ratio = per_worker / snapshot_kib
        print(
            f"each extra worker adds {per_worker / 1024:.1f} MiB Pss = {ratio:.2f} x the "
            f"snapshot ({snapshot_kib / 1024:.1f} MiB): "
            f"{'PASS' if ratio < 0.5 else 'FAIL'} (claim: well under the index size; "
            "PASS means < 0.5 x)"
        )


if __name__ == "__main__":
    main()
