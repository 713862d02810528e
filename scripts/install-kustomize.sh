#!/usr/bin/env bash
# Builds kustomize v5.8.1 (sigs.k8s.io/kustomize/kustomize/v5) from the Go module proxy into the
# project cache, for test/deploy (it renders every kustomization under deploy/). The wrapper module
# scripts/go/kustomize pins it with a committed go.sum. Idempotent: skips when the cached binary
# reports the pinned version.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/bin"
V=v5.8.1
mkdir -p "$bin"
if [ -x "$bin/kustomize" ] && "$bin/kustomize" version 2>/dev/null | grep -q "$V"; then
  echo "kustomize $V already installed in $bin"
  exit 0
fi
echo "building kustomize $V ..."
cd "$root/scripts/go/kustomize"
CGO_ENABLED=0 go build -trimpath -o "$bin/kustomize" \
  -ldflags "-X sigs.k8s.io/kustomize/api/provenance.version=kustomize/$V" \
  sigs.k8s.io/kustomize/kustomize/v5
"$bin/kustomize" version
