#!/usr/bin/env bash
# Creates .venv with Python 3.11+ and installs Spyglass into it, with the extras given
# as arguments (e.g. "test"). On Debian, installs python3-venv first if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  as_root apt-get update -qq
  as_root apt-get install -y -qq python3-venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
extras="${1:-}"
spec="."
[ -n "$extras" ] && spec=".[$extras]"
# The image extra needs torch; the CPU build of this exact version first, or pip
# would satisfy "torch>=2.13" with a multi-GB CUDA build.
if [[ ",$extras," == *,image,* ]]; then
  .venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0"
fi
.venv/bin/pip install -q --disable-pip-version-check -e "$spec"
