#!/usr/bin/env bash
# `bash scripts/with-node.sh CMD ...`: runs CMD with a supported Node first on PATH (scripts/node-env.sh), for the
# package.json scripts that do not go through setup.sh.
set -euo pipefail
source "$(dirname "$0")/node-env.sh"
exec "$@"
