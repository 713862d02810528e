#!/usr/bin/env bash
# Builds the go-spiffe interop programs under test/interop/cmd/* (real go-spiffe v2 clients and
# servers the tests run against) into the project cache. Idempotent: Go's build cache makes a
# rebuild of unchanged sources take about a second. The committed go.sum pins every module.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/bin/interop"
mkdir -p "$out"
cd "$root/test/interop"
echo "building go-spiffe interop programs into $out ..."
for dir in cmd/*/; do
  name="$(basename "$dir")"
  go build -trimpath -o "$out/$name" "./$dir"
  echo "  $name"
done
echo "go-spiffe $("$out/version")"
