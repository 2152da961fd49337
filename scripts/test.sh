#!/usr/bin/env bash
# Run the whole test suite (unit, integration against loopback stand-ins, e2e against Pebble). Extra arguments go
# to vitest, e.g. scripts/test.sh test/unit
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
exec npx vitest run "$@"
