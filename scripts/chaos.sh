#!/usr/bin/env bash
# `npm run chaos [-- --quick | --minutes=N] [--seed=N]`: installs what is missing, then runs the chaos soak (root).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "chaos: run as root (dockerd, network namespaces, loop mounts)" >&2; exit 1; fi
source scripts/node-env.sh
bash scripts/setup.sh
exec node --import tsx bench/chaos.ts "$@"
