#!/usr/bin/env bash
# The sandbox demo: start Pebble and every loopback stand-in, run a real renewal end to end, print each stage and
# one JSON line with the result.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
exec node dist/test/harness/demo.js "$@"
