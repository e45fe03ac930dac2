#!/usr/bin/env bash
# The first command of the README: install Spyglass and serve the demo collection
# on http://127.0.0.1:8000 (Ctrl-C stops it). Extra arguments go to `spyglass demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/spyglass demo "$@"
