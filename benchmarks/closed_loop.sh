#!/usr/bin/env bash
# Closed-loop clients against admission control (issue 16): wrk at 16, 64 and 1,000
# connections, each resending as soon as it is answered, refused or not.
#
# A steady population that fits the queue must be served, not refused; a server that
# was overloaded once (here: its first search loads the index, so the first second is
# "cold") must find its way back instead of refusing the resends for ever.
# Vector search on the 100k x 64 set of benchmarks/overload_pinned.sh (run that once
# first), two workers, cache off, one vector query.
#
#   benchmarks/closed_loop.sh            # SECONDS_EACH=15 by default
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=benchmarks/out/overload/data
SECONDS_EACH=${SECONDS_EACH:-15}
[ -d "$DATA" ] || { echo "run benchmarks/overload_pinned.sh once first: it makes $DATA" >&2; exit 1; }
command -v wrk > /dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python - "$work/body.json" <<'EOF'
import json, sys
import numpy as np
vector = np.random.default_rng(1).normal(size=64).tolist()
json.dump({"vector": vector, "k": 10}, open(sys.argv[1], "w"))
EOF
cat > "$work/post.lua" <<EOF
local f = io.open("$work/body.json"); local body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.body = body; wrk.headers["Content-Type"] = "application/json"
EOF
port=8793
SPYGLASS_CACHE_MAX_BYTES=0 .venv/bin/python -m spyglass serve --data-dir "$DATA" --port $port \
  --workers 2 > "$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 300); do curl -sf localhost:$port/readyz > /dev/null && break; sleep 0.2; done
echo "code $(git rev-parse --short HEAD); 2 workers; ${SECONDS_EACH} s each; the first run starts cold"
for connections in 16 64 1000 16; do
  out=$(wrk -t1 -c$connections -d${SECONDS_EACH}s -s "$work/post.lua" \
        http://127.0.0.1:$port/collections/bench/search 2>&1)
  total=$(echo "$out" | awk '/requests in/ {print $1}')
  refused=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  timeouts=$(echo "$out" | awk '/Socket errors/ {print $NF}')
  latency=$(echo "$out" | awk '/Latency/ {print $2, "avg,", $4, "max"}')
  echo "$connections connections: ${total} answers, ${refused:-0} not 2xx, ${timeouts:-0} timeouts; latency $latency"
done
