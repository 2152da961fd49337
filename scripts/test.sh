#!/usr/bin/env bash
# Run the whole test suite (unit, integration against loopback stand-ins, e2e against Pebble). Extra arguments go
# to vitest, e.g. scripts/test.sh test/unit
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
# Type-check everything, tests included (the build only compiles what ships and the harness).
npx tsc -p tsconfig.test.json
exec npx vitest run "$@"
