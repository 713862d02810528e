#!/usr/bin/env bash
# Builds the Istio bundle fetcher test/adapters/endpoint/relay-istio.test.ts runs
# (scripts/go/istio-relay: istio.io/istio/pkg/spiffe's RetrieveSpiffeBundleRootCerts, what istiod
# uses for MeshConfig caCertificates[].spiffeBundleUrl, from the Go module proxy) into the project
# cache. The wrapper module's committed go.sum pins every module. Idempotent: Go's build cache
# makes a rebuild of unchanged sources take a few seconds.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/bin"
mkdir -p "$bin"
cd "$root/scripts/go/istio-relay"
echo "building istio-relay into $bin ..."
CGO_ENABLED=0 go build -trimpath -o "$bin/istio-relay" .
echo "istio $("$bin/istio-relay" -version)"
