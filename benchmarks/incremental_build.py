"""Index upkeep at a million items (issue 18): a full build, then 20,000 new items.

Data: the peer harness's generator (sentence-embedding-shaped, clustered, unit-length
384-d vectors, exact top-10 ground truth for 1,000 queries), N + NEW rows. The first
N go into a fresh embedded store and are built from scratch; then NEW more are
written and the next build extends the snapshot with them. Each step runs in its own
process, watched from here for its peak memory (anonymous and file-backed apart:
the file-backed part is the SQLite pages and snapshot files the step maps, which the
kernel can drop), so that one step's memory does not count against the next.

Prints one table: seconds, peak memory and snapshot size per step; then recall@10 at
the default ef, single-thread searches/s and the time from opening the store to the
first answer.

    .venv/bin/python benchmarks/incremental_build.py                 # 1M + 20k, ~25 min
    .venv/bin/python benchmarks/incremental_build.py --n 100000      # ~3 min
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common

from spyglass.stores.base import IndexParams

GENERATOR = _common.REPO.parent / "shared" / "tools" / "peer_bench" / "make_data.py"

WRITE = """
import sys, time, numpy as np
from pathlib import Path
from spyglass.stores.base import CollectionSpec, IndexParams, Item
from spyglass.stores.embedded import EmbeddedStore
data, store_dir, start, stop = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
base = np.load(data + "/base.npy", mmap_mode="r")
store = EmbeddedStore(store_dir, snapshot_tail=10**9)
index = IndexParams(quantization=sys.argv[5], ef_construction=int(sys.argv[6]))
store.create_collection(CollectionSpec(name="c", dim=base.shape[1], metric="cosine", index=index))
began = time.perf_counter()
with store.bulk():
    for at in range(start, stop, 10_000):
        rows = np.asarray(base[at : min(at + 10_000, stop)], dtype=np.float32)
        store.upsert("c", [Item(id=str(at + i), vector=v) for i, v in enumerate(rows)])
print(time.perf_counter() - began)
store.close()
"""

BUILD = """
import sys, time
from pathlib import Path
from spyglass.stores.embedded import EmbeddedStore
store = EmbeddedStore(Path(sys.argv[1]), snapshot_tail=10**9)
began = time.perf_counter()
store.optimize("c")
seconds = time.perf_counter() - began
state = store.index_state("c")
print(
    seconds,
    int(bool(state.last_build_extended)),
    state.indexed,
    store._sync("c").snapshot_seq,
    state.ef_search,
    state.recall_estimate,
)
store.close()
"""

SEARCH = """
import sys, time, numpy as np
from pathlib import Path
began = time.perf_counter()
from spyglass.stores.base import Query
from spyglass.stores.embedded import EmbeddedStore
data = sys.argv[2]
queries = np.load(data + "/queries.npy")
store = EmbeddedStore(Path(sys.argv[1]), snapshot_tail=10**9)
store.search("c", [Query(vector=queries[0], k=10)])
first = time.perf_counter() - began
truth = np.load(data + "/gt_ids.npy")
found = 0
began = time.perf_counter()
for rounds in range(3):
    for q, want in zip(queries, truth):
        hits = store.search("c", [Query(vector=q, k=10)])[0]
        if rounds == 0:
            found += len({int(h.id) for h in hits} & set(want.tolist()))
rate = 3 * len(queries) / (time.perf_counter() - began)
print(first, found / truth.size, rate)
store.close()
"""


def watched(code: str, *args: str) -> tuple[list[str], float, float]:
    """Run ``code`` in a child; its stdout words and its peak anonymous
    and file-backed resident memory in MiB (sampled every 0.1 s)."""
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    anon = files = 0
    status = Path(f"/proc/{child.pid}/status")
    while child.poll() is None:
        try:
            fields = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
            anon = max(anon, int(fields["RssAnon"].split()[0]))
            files = max(
                files, int(fields["RssFile"].split()[0]) + int(fields["RssShmem"].split()[0])
            )
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.1)
    out = child.stdout.read() if child.stdout else ""
    if child.returncode:
        raise SystemExit(f"step failed ({child.returncode}): {code[:60]}")
    return out.split(), anon / 1024, files / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="items built from scratch")
    parser.add_argument("--new", type=int, default=20_000, help="items added after")
    parser.add_argument(
        "--quantization", default="none", choices=["none", "half", "sq8", "pq"], help="index codes"
    )
    parser.add_argument(
        "--ef-construction", type=int, default=IndexParams().ef_construction, help="build beam"
    )
    args = parser.parse_args()
    total = args.n + args.new
    data = Path(f"/tmp/peer_bench/data-{total}")
    if not (data / "base.npy").exists():
        subprocess.run([sys.executable, str(GENERATOR), str(data), "--n", str(total)], check=True)
    store = _common.OUT / f"incremental-{total}-{args.quantization}-{args.ef_construction}"
    if store.exists():
        subprocess.run(["rm", "-rf", str(store)], check=True)
    index = store / "index"

    def snapshot_mib(seq: str) -> float:
        return sum(p.stat().st_size for p in index.rglob(f"*-{seq}.*")) / 2**20

    def index_mib(seq: str) -> float:
        return sum(p.stat().st_size for p in index.rglob(f"hnsw-{seq}.faiss")) / 2**20

    rows: list[tuple[str, float, float, float, float | None]] = []
    q, efc = args.quantization, str(args.ef_construction)
    out, anon, files = watched(WRITE, str(data), str(store), "0", str(args.n), q, efc)
    rows.append((f"write {args.n:,} items", float(out[0]), anon, files, None))
    out, anon, files = watched(BUILD, str(store))
    full_s, full_seq, tuned = float(out[0]), out[3], out[4:6]
    rows.append((f"full build of {args.n:,}", full_s, anon, files, snapshot_mib(full_seq)))
    out, anon, files = watched(WRITE, str(data), str(store), str(args.n), str(total), q, efc)
    rows.append((f"write {args.new:,} more", float(out[0]), anon, files, None))
    out, anon, files = watched(BUILD, str(store))
    assert out[1] == "1", "the second build did not extend the snapshot"
    rows.append((f"extend by {args.new:,}", float(out[0]), anon, files, snapshot_mib(out[3])))
    last_seq, retuned = out[3], out[4:6]
    search, search_anon, search_files = watched(SEARCH, str(store), str(data))
    print(
        f"code {_common.code_version()}; {total:,} x 384; quantization {q};"
        f" ef_construction {efc}; {os.cpu_count()} cores"
    )
    print("| step | seconds | peak anon MiB | peak file MiB | snapshot MiB |")
    print("|---|---|---|---|---|")
    for name, seconds, anon, files, size in rows:
        shown = f"{size:,.0f}" if size is not None else ""
        print(f"| {name} | {seconds:,.1f} | {anon:,.0f} | {files:,.0f} | {shown} |")
    print(f"extending took {rows[3][1] / full_s:.1%} of the full build's time")
    print(
        f"index (hnsw file) {index_mib(full_seq):,.0f} MiB after the full build,"
        f" {index_mib(last_seq):,.0f} MiB after the extension; searching: peak anon"
        f" {search_anon:,.0f} MiB, file {search_files:,.0f} MiB"
    )
    print(
        f"tuned default ef {tuned[0]} (estimate {tuned[1]}) after the full build,"
        f" {retuned[0]} (estimate {retuned[1]}) after the extension"
    )
    print(
        f"restart to first answer {float(search[0]):.2f} s; recall@10 {float(search[1]):.3f}"
        f" at the default ef; {float(search[2]):,.0f} searches/s on one thread"
    )
    print(json.dumps({"rows": rows, "search": search}))


if __name__ == "__main__":
    main()
