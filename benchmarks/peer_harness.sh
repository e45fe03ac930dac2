#!/usr/bin/env bash
# Spyglass next to its peers in ../shared/tools/peer_bench (issue 17): starts `spyglass serve`
# with the defaults a user gets (2 workers, access log on) and only the query cache off,
# on a fresh data directory, then runs the harness (raw FAISS, chromadb, txtai and Spyglass,
# 64 connections, one table) and Spyglass alone again at 16 and 1,000 connections.
#
#   benchmarks/peer_harness.sh [OUT_DIR]          # ~15 min, installs the peers' venvs once
#   SYSTEMS=faiss benchmarks/peer_harness.sh      # fewer peers (Spyglass always runs)
#
# Writes OUT_DIR (default benchmarks/out/peers)/results.md and conns-{16,1000}.json, prints
# the table and, for each connection count, req/s, 2xx/s, p50/p99 and the server's memory.
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS=../shared/tools/peer_bench
OUT=${1:-benchmarks/out/peers}
DATA=${PEER_BENCH_DATA:-/tmp/peer_bench/data-100k}
PORT=${PORT:-8080}
STATE=$(mktemp -d /tmp/spyglass-peers.XXXXXX)
mkdir -p "$OUT"
.venv/bin/spyglass serve --data-dir "$STATE" --port "$PORT" --workers 2 --cache-max-bytes 0 \
  > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$STATE"' EXIT
for _ in $(seq 120); do curl -sf "localhost:$PORT/readyz" > /dev/null && break; sleep 0.5; done
bash "$HARNESS/run_all.sh" "$DATA" "$OUT" --systems "${SYSTEMS:-faiss,chromadb,txtai}" \
  --spyglass-url "http://127.0.0.1:$PORT"
.venv/bin/python - "$SERVER" "$STATE" > "$OUT/memory.md" <<'PY'
"""The server's memory after the harness loaded it over HTTP: Pss summed over the
process tree (what the machine pays: shared pages are split among their users) and
RSS, next to the raw vectors and the index files on disk."""
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks")
from _common import proc_memory

root, state = int(sys.argv[1]), Path(sys.argv[2])
parents = {}
for stat in Path("/proc").glob("[0-9]*/stat"):
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        continue
    parents[int(stat.parent.name)] = int(fields[1])
tree, grew = {root}, True
while grew:
    grew = False
    for pid, parent in parents.items():
        if parent in tree and pid not in tree:
            tree.add(pid)
            grew = True
mem = [proc_memory(pid) for pid in sorted(tree)]
pss = sum(m.get("Pss", 0) for m in mem) / 1024
rss = sum(m.get("VmRSS", 0) for m in mem) / 1024
raw = 100_000 * 384 * 4 / 2**20
index = sum(f.stat().st_size for f in (state / "index").rglob("*") if f.is_file()) / 2**20
print("| processes | Pss sum MiB | RSS sum MiB | raw vectors MiB | index files MiB | Pss / (raw + index) |")
print("|---|---|---|---|---|---|")
print(f"| {len(tree)} | {pss:,.0f} | {rss:,.0f} | {raw:,.0f} | {index:,.0f} | {pss / (raw + index):.2f} |")
PY
for conns in 16 1000; do
  /tmp/peer_bench/venv-bench/bin/python "$HARNESS/load.py" spyglass "http://127.0.0.1:$PORT" \
    "$DATA" "$OUT/conns-$conns.json" --connections "$conns" --no-recall > /dev/null
done
.venv/bin/python - "$OUT" <<'PY'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
print((out / "results.md").read_text())
print((out / "memory.md").read_text())
runs = {"64": json.loads((out / "results.json").read_text())}
for conns in ("16", "1000"):
    runs[conns] = json.loads((out / f"conns-{conns}.json").read_text())


def spyglass_load(result: dict) -> dict:
    if "systems" in result:
        result = result["systems"]["spyglass"]
    return result.get("loadtest") or result.get("load")


print("| connections | req/s | 2xx/s | p50 ms | p99 ms | errors | server RSS MiB |")
print("|---|---|---|---|---|---|---|")
for conns, result in runs.items():
    load = spyglass_load(result)
    errors = load["errors"]
    ok = load["req_per_s"] * (1 - errors["status"] / max(1, load["requests"]))
    print(
        f"| {conns} | {load['req_per_s']:,.0f} | {ok:,.0f} | {load['latency_ms']['p50']} |"
        f" {load['latency_ms']['p99']} | {sum(errors.values())} | {load['server_rss_mib']} |"
    )
PY
