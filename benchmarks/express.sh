#!/usr/bin/env bash
# The express lane on and off, back to back (issue 17): vector search k=10 on the peer
# harness's 100,000 x 384 set, full-precision query vectors cycled from its 1,000 queries
# (wrk Lua), access log on, query cache off.
#
#   1. one worker pinned to core 1, wrk (one thread, 16 connections) pinned to core 0:
#      req/s and the server's CPU per request (utime + stime over the run / requests);
#   2. two workers and wrk (64 connections), unpinned, as a user runs them.
# Each configuration runs express off, on, off, on (ROUNDS=2) for SECONDS_EACH s, after a
# 4 s warm-up, so that machine noise shows as the spread between rounds.
#
#   benchmarks/express.sh              # ~4 min, plus ~1 min to load the set the first time
#   SECONDS_EACH=30 ROUNDS=3 benchmarks/express.sh
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS_DATA=${PEER_BENCH_DATA:-/tmp/peer_bench/data-100k}
OUT=benchmarks/out/express
DATA=$OUT/data
SECONDS_EACH=${SECONDS_EACH:-15}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-8795}
command -v wrk > /dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
if [ ! -f "$HARNESS_DATA/base.npy" ]; then
  .venv/bin/python ../shared/tools/peer_bench/make_data.py "$HARNESS_DATA"
fi
mkdir -p "$OUT"
if [ ! -d "$DATA" ]; then
  .venv/bin/python - "$HARNESS_DATA/base.npy" "$OUT/base.parquet" <<'EOF'
import sys
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
base = np.load(sys.argv[1]).astype(np.float32)
ids = [str(i) for i in range(len(base))]
pq.write_table(pa.table({"id": ids, "vector": list(base)}), sys.argv[2])
EOF
  .venv/bin/spyglass ingest bench "$OUT/base.parquet" --data-dir "$DATA" --metric cosine
fi
.venv/bin/python - "$HARNESS_DATA/queries.npy" "$OUT/bodies.txt" <<'EOF'
import json, sys
import numpy as np
queries = np.load(sys.argv[1])
with open(sys.argv[2], "w") as out:
    out.write("\n".join(json.dumps({"vector": [float(x) for x in q], "k": 10}) for q in queries))
EOF
cat > "$OUT/cycle.lua" <<EOF
local bodies = {}
for line in io.lines("$OUT/bodies.txt") do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"; wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
EOF
url=http://127.0.0.1:$PORT/collections/bench/search
server=

stop() {
  if [ -n "$server" ]; then
    kill "$server" 2> /dev/null || true
    wait "$server" 2> /dev/null || true
  fi
  server=
}
trap stop EXIT

start() {  # start EXPRESS WORKERS CPUS
  local serve=(.venv/bin/spyglass serve --data-dir "$DATA" --port "$PORT" --workers "$2"
               --cache-max-bytes 0)
  [ -n "$3" ] && serve=(taskset -c "$3" "${serve[@]}")
  SPYGLASS_EXPRESS_SEARCH=$1 "${serve[@]}" > "$OUT/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 300); do curl -sf "localhost:$PORT/readyz" > /dev/null && break; sleep 0.2; done
}

tree() {  # tree PID: PID and its descendants
  local child
  echo "$1"
  for child in $(pgrep -P "$1" || true); do tree "$child"; done
}

cpu_ticks() {  # utime + stime of the server's process tree
  local total=0 pid
  for pid in $(tree "$server"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2> /dev/null || echo 0)))
  done
  echo "$total"
}

measure() {  # measure LABEL EXPRESS WORKERS SERVER_CPUS WRK_CPUS CONNECTIONS
  start "$2" "$3" "$4"
  local pin=()
  [ -n "$5" ] && pin=(taskset -c "$5")
  "${pin[@]}" wrk -t1 -c"$6" -d4s -s "$OUT/cycle.lua" "$url" > /dev/null
  local before after out
  before=$(cpu_ticks)
  out=$("${pin[@]}" wrk -t1 -c"$6" -d"${SECONDS_EACH}s" --latency -s "$OUT/cycle.lua" "$url")
  after=$(cpu_ticks)
  stop
  local requests rps p50 p99 non2xx
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  local tick
  tick=$(getconf CLK_TCK)
  printf '| %s | %s | %s | %s | %s | %s | %.0f |\n' "$1" "express $2" "$rps" "$p50" "$p99" \
    "${non2xx:-0}" "$(echo "($after - $before) * 1000000 / $tick / $requests" | bc -l)"
}

echo "code $(git rev-parse --short HEAD); ${SECONDS_EACH} s a run; $(nproc) cores"
echo "| run | lane | req/s | p50 | p99 | non-2xx | server CPU µs / request |"
echo "|---|---|---|---|---|---|---|"
for _ in $(seq "$ROUNDS"); do
  for express in false true; do
    measure "pinned: 1 worker on core 1, wrk on core 0, 16 conns" $express 1 1 0 16
  done
done
for _ in $(seq "$ROUNDS"); do
  for express in false true; do
    measure "unpinned: 2 workers, 64 conns" $express 2 "" "" 64
  done
done
