#!/usr/bin/env bash
# The benchmark (bench/README.md): amlcert, Debian's lego and certbot, and a bare acme-client script, each issuing
# against Pebble and the loopback stand-ins, interleaved; prints the tables and writes bench/results/.
#   bash scripts/bench.sh                 # the full run (5 runs x delays 0, 2, 5 s; fleet 1/10/100; 1000 daemon cycles)
#   bash scripts/bench.sh --smoke         # one iteration, no delay (what the test suite runs)
#   bash scripts/bench.sh --runs 7 --delays 0,2 --sections issuance
#
# Needs root (or sudo): it runs in its own network namespace (loopback only, nothing else reachable) and mount
# namespace, where /etc/hosts maps the zone's name servers to 127.0.0.2 and 127.0.0.3 and DNS relays answer on
# their port 53, so that lego's propagation check asks them as it asks real name servers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# --no-build: use dist/ as it is (the test suite's smoke test, which runs after the build)
build=1
args=()
for a in "$@"; do
  if [ "$a" = "--no-build" ]; then build=0; else args+=("$a"); fi
done
set -- "${args[@]+"${args[@]}"}"
if [ "${AMLCERT_BENCH_NS:-}" != "1" ]; then
  if [ "$build" = 0 ]; then
    # shellcheck source=scripts/node-env.sh
    source scripts/node-env.sh
    export NODE_EXTRA_CA_CERTS="$PWD/.cache/test-pki/ca.pem"
    [ -f dist/bin/amlcert.js ] && [ -f dist/bench/run.js ] || { echo "amlcert bench: --no-build, but dist/ has no build: run npm run build" >&2; exit 2; }
  elif [ -d node_modules ] && openssl x509 -checkend 21600 -noout -in .cache/test-pki/server.pem >/dev/null 2>&1; then
    # shellcheck source=scripts/node-env.sh
    source scripts/node-env.sh
    npm run --silent build || { echo "amlcert bench: the build reported errors (above); running what it emitted" >&2; node scripts/bundle.mjs; }
    export NODE_EXTRA_CA_CERTS="$PWD/.cache/test-pki/ca.pem"
  else
    # a fresh clone: scripts/setup.sh installs and builds everything the tests need
    # shellcheck source=scripts/setup.sh
    source scripts/setup.sh
  fi
  if [ "$build" = 1 ]; then node scripts/bundle.mjs --bench-only; elif [ ! -f dist/bench-bin/daemon-cycles.js ]; then node scripts/bundle.mjs --bench-only; fi
  bash bench/setup.sh
  hosts="$(mktemp)"
  trap 'rm -f "$hosts"' EXIT
  { cat /etc/hosts; echo "127.0.0.2 ns1-01.azure-dns.test"; echo "127.0.0.3 ns2-01.azure-dns.test"; } >"$hosts"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo -E"
  # the child is this script again, inside the namespaces
  $SUDO unshare --mount --net --propagation private bash -c 'set -e; ip link set lo up; mount --bind "$1" /etc/hosts; shift; AMLCERT_BENCH_NS=1 exec bash "$@"' _ "$hosts" "$0" "$@"
  exit $?
fi
exec node dist/bench/run.js "$@"
