#!/usr/bin/env bash
# Run the whole test suite (unit, integration against loopback stand-ins, e2e against Pebble). Extra arguments go
# to vitest, e.g. scripts/test.sh test/unit
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
# Type-check everything, tests included (the build only compiles what ships and the harness).
npx tsc -p tsconfig.test.json
# Every CLI child's stdout/stderr is kept here (test/harness/harness.ts), fresh for each run of the suite ...
export AMLCERT_TEST_LOG_DIR="${AMLCERT_TEST_LOG_DIR:-$PWD/.cache/cli-logs}"
rm -rf "$AMLCERT_TEST_LOG_DIR" && mkdir -p "$AMLCERT_TEST_LOG_DIR"
status=0
npx vitest run "$@" || status=$?
# ... and searched for keys, tokens and credentials after the suite: a finding fails the suite (test/scan/).
npx vitest run --config vitest.scan.config.ts || status=$?
exit "$status"
