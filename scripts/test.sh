#!/usr/bin/env bash
# The README's test command: installs what is missing, type-checks, lints, then runs every test against real
# components (overlayfs, dockerd engines, the embedded S3 server, keepalived in network namespaces). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "test: run as root (overlay mounts, dockerd, network namespaces)" >&2; exit 1; fi
source scripts/node-env.sh
bash scripts/setup.sh
echo "== typecheck" >&2
npx tsc -p tsconfig.json --noEmit
echo "== lint" >&2
npx eslint . --max-warnings=0
echo "== tests" >&2
mapfile -t files < <(find test/unit test/integration test/e2e -name '*.test.ts' 2>/dev/null | sort)
if [ "${#files[@]}" -eq 0 ]; then echo "test: no test files found" >&2; exit 1; fi
# One file at a time: the integration files start their own engines and the machine has two cores.
exec node --import tsx --import ./test/support/setup.ts --test --test-concurrency=1 --test-timeout=900000 "$@" "${files[@]}"
