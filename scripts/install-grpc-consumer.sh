#!/usr/bin/env bash
# Builds the proxyless-gRPC consumer test/engine/publish/file-output-grpc.test.ts runs
# (scripts/go/grpc-consumer: a grpc-go server and client that trust peers through the broker's
# grpc-bundle-map file with grpc-go's own SPIFFE Bundle Map support, gRFC A87) into the project
# cache. google.golang.org/grpc and go-spiffe come from the Go module proxy; the wrapper module's
# committed go.sum pins every module. Idempotent: Go's build cache makes a rebuild of unchanged
# sources take about a second.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/bin"
mkdir -p "$bin"
cd "$root/scripts/go/grpc-consumer"
echo "building grpc-consumer into $bin ..."
CGO_ENABLED=0 go build -trimpath -o "$bin/grpc-consumer" .
"$bin/grpc-consumer" -version
