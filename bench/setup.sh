#!/usr/bin/env bash
# The benchmark's own set-up (idempotent), on top of scripts/setup.sh: Debian's lego and certbot, which the
# benchmark runs beside amlcert, and util-linux's unshare and iproute2's ip for its private namespaces.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
missing=()
command -v lego >/dev/null 2>&1 || missing+=(lego)
command -v certbot >/dev/null 2>&1 || missing+=(certbot)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
[ -x /usr/bin/time ] || missing+=(time)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "amlcert bench setup: installing ${missing[*]} (Debian packages)" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
