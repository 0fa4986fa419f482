#!/usr/bin/env bash
# The README's demo command: installs what is missing, then runs `twinlayer demo` (root: network namespaces,
# Docker engines, keepalived). Cleans up after itself, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "demo: run as root (network namespaces, dockerd, keepalived)" >&2; exit 1; fi
source scripts/node-env.sh
bash scripts/setup.sh
exec node bin/twinlayer.js demo "$@"
