#!/usr/bin/env bash
# Builds the OIDC relying party test/adapters/oidc runs (scripts/go/oidc-consumer: discovery and
# JWT verification with github.com/coreos/go-oidc/v3 from the Go module proxy) into the project
# cache. The wrapper module's committed go.sum pins every module. Idempotent: Go's build cache
# makes a rebuild of unchanged sources take about a second.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/bin"
mkdir -p "$bin"
cd "$root/scripts/go/oidc-consumer"
echo "building oidc-consumer into $bin ..."
CGO_ENABLED=0 go build -trimpath -o "$bin/oidc-consumer" .
echo "go-oidc $("$bin/oidc-consumer" -version)"
