#!/usr/bin/env bash
# Past capacity, with the load generator kept off the server's CPU (issue 16).
#
# Vector search on 100,000 x 64 clustered vectors (made once into benchmarks/out/):
#   1. a one-worker server pinned to core 1, `spyglass bench overload` pinned to core 0;
#   2. the ordinary two-worker server, unpinned, for reference.
# Each finds its capacity R (p95 <= 100 ms, only 2xx), then offers 0.5x to 8x of it for
# STEP seconds a level and prints the table with PASS/FAIL per target. The access log is
# on (the server's output goes to a file), the result cache off.
#
#   benchmarks/overload_pinned.sh            # STEP=60 by default; STEP=20 for a quick look
#   STEP=20 START_RATE=200 benchmarks/overload_pinned.sh   # a shorter ramp to R
#   SERVER_PYTHONPATH=/path/to/other/src benchmarks/overload_pinned.sh   # another version
#   ONLY=pinned (or unpinned) benchmarks/overload_pinned.sh                 # one of the two
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${STEP:-60}
TAG=${TAG:-now}  # names the reports, e.g. TAG=before with SERVER_PYTHONPATH
START_RATE=${START_RATE:-50}  # the capacity ramp's first rate (req/s)
OUT=benchmarks/out/overload
DATA=$OUT/data
mkdir -p "$OUT"
if [ ! -d "$DATA" ]; then
  .venv/bin/python - "$OUT/vec100k.parquet" <<'EOF'
import sys
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
rng = np.random.default_rng(0)
centers = rng.normal(size=(200, 64)).astype(np.float32)
vectors = centers[rng.integers(0, 200, size=100_000)]
vectors = (vectors + 0.3 * rng.normal(size=vectors.shape)).astype(np.float32)
ids = [f"i{i}" for i in range(len(vectors))]
pq.write_table(pa.table({"id": ids, "vector": list(vectors)}), sys.argv[1])
EOF
  .venv/bin/spyglass ingest bench "$OUT/vec100k.parquet" --data-dir "$DATA"
fi

run() {  # run NAME SERVER_CPUS GENERATOR_CPUS WORKERS
  local name=$TAG-$1 server_cpus=$2 generator_cpus=$3 workers=$4 port=8791
  local serve=(.venv/bin/python -m spyglass serve --data-dir "$DATA" --port $port --workers "$workers")
  [ -n "$server_cpus" ] && serve=(taskset -c "$server_cpus" "${serve[@]}")
  PYTHONPATH=${SERVER_PYTHONPATH:-} SPYGLASS_CACHE_MAX_BYTES=0 "${serve[@]}" > "$OUT/$name-server.log" 2>&1 &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  for _ in $(seq 300); do curl -sf localhost:$port/readyz > /dev/null && break; sleep 0.2; done
  local bench=(.venv/bin/spyglass bench overload --url http://127.0.0.1:$port --collection bench
               --mix vector=1 --step-s "$STEP" --start-rate "$START_RATE" --out "$OUT/$name")
  [ -n "$generator_cpus" ] && bench=(taskset -c "$generator_cpus" "${bench[@]}")
  echo "== $name: server on cpus ${server_cpus:-all} ($workers workers), generator on ${generator_cpus:-all}"
  "${bench[@]}"
  kill $pid; wait $pid 2>/dev/null || true
}

case ${ONLY:-both} in
  pinned) run pinned 1 0 1 ;;
  unpinned) run unpinned "" "" 2 ;;
  *) run pinned 1 0 1; run unpinned "" "" 2 ;;
esac
