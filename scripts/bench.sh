#!/usr/bin/env bash
# `npm run bench [-- --quick]`: installs what is missing (lsyncd and rsync too), then runs the benchmarks (root).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "bench: run as root (dockerd, overlay mounts)" >&2; exit 1; fi
source scripts/node-env.sh
TWINLAYER_SETUP_BENCH=1 bash scripts/setup.sh
exec node --import tsx bench/run.ts "$@"
