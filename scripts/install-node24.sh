#!/usr/bin/env bash
# Installs Node 24 LTS from the npm registry (the `node` package ships the binary) into the
# project cache, for CI's second Node line. Idempotent.
set -euo pipefail
cache="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/node24"
bin="$cache/node_modules/.bin/node"
if [ -x "$bin" ] && "$bin" --version | grep -q '^v24\.'; then
  echo "node 24 already installed: $("$bin" --version)"
  exit 0
fi
mkdir -p "$cache"
echo "installing node@24 into $cache ..."
npm install --prefix "$cache" --no-audit --no-fund --no-save --foreground-scripts node@24 >/dev/null
# npm 11 does not run dependency install scripts unless approved; the `node` package needs its
# postinstall to place the binary, so run it explicitly when the binary is missing.
if ! [ -x "$bin" ] || ! "$bin" --version >/dev/null 2>&1; then
  (
    cd "$cache/node_modules/node" || exit 0
    npm run preinstall --if-present >/dev/null 2>&1 || true
    node installArchSpecificPackage.js 2>/dev/null || true
  )
fi
"$bin" --version
