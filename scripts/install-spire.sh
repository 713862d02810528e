#!/usr/bin/env bash
# Builds a real spire-server (SPIRE v1.15.3) from the Go module proxy into the project cache, for
# the real-SPIRE test suites (test/adapters/spire/contract.test.ts via test/support/spire-harness.ts).
#
#   ${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/bin/spire-server
#
# How: the wrapper module scripts/go/spire requires github.com/spiffe/spire v1.15.3 (with a `tool`
# line) and pins one dependency with a replace (github.com/Keyfactor/ejbca-go-client-sdk =>
# v1.0.2, because the proxy refuses the v1.1.0 SPIRE asks for). Its committed go.sum makes the
# build reproducible, so no GOFLAGS=-mod=mod, GONOSUMDB or GOSUMDB=off is needed: a missing or
# mismatching checksum fails the build instead of being silently accepted.
#
# CGO is required: SPIRE's SQLite datastore (mattn/go-sqlite3) is compiled only with cgo, and a
# cgo-less binary fails at runtime with "sqlite3 is not a supported dialect when CGO is not
# enabled". The version is stamped like SPIRE's own release build (ldflags gittag), so
# `spire-server --version` prints exactly 1.15.3.
#
# Idempotent: skips when the binary exists and reports 1.15.3. The Go build cache ($(go env
# GOCACHE)) makes rebuilds take seconds; the first build takes 5-30 minutes on 2 cores.
# Requires: Go >= 1.26.6 and a C compiler (gcc).
set -euo pipefail

V=1.15.3
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/bin"
target="$bin/spire-server"

reported_version() {
  # spire-server prints its version on stderr.
  "$1" --version 2>&1 | head -n 1
}

if [ -x "$target" ]; then
  have="$(reported_version "$target" || true)"
  if [ "$have" = "$V" ]; then
    echo "spire-server $V already installed at $target"
    exit 0
  fi
  echo "found $target reporting '${have}', want '$V': rebuilding"
fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: go is not on PATH; install Go >= 1.26.6 (SPIRE v1.15.3's go.mod requires it)" >&2
  exit 1
fi
echo "using $(go version)"
cc="$(go env CC)"
if ! command -v "${cc%% *}" >/dev/null 2>&1; then
  echo "error: C compiler '$cc' not found; CGO_ENABLED=1 is required for SPIRE's SQLite datastore" >&2
  exit 1
fi

mkdir -p "$bin"
cd "$root/scripts/go/spire"
log="$(mktemp)"
trap 'rm -f "$log" "$target.tmp"' EXIT
echo "building spire-server $V from $(pwd) (module proxy: $(go env GOPROXY)) ..."
start=$SECONDS
CGO_ENABLED=1 go build -trimpath \
  -ldflags "-X github.com/spiffe/spire/pkg/common/version.gittag=$V" \
  -o "$target.tmp" github.com/spiffe/spire/cmd/spire-server >"$log" 2>&1 &
pid=$!
# Heartbeat so CI logs show progress during a long cold build.
while kill -0 "$pid" 2>/dev/null; do
  sleep 30
  if kill -0 "$pid" 2>/dev/null; then echo "  ... still building ($((SECONDS - start))s)"; fi
done
if ! wait "$pid"; then
  echo "error: go build of spire-server $V failed after $((SECONDS - start))s; its output:" >&2
  cat "$log" >&2
  exit 1
fi
mv "$target.tmp" "$target"
got="$(reported_version "$target")"
if [ "$got" != "$V" ]; then
  echo "error: the built $target reports '$got', expected '$V'" >&2
  exit 1
fi
echo "spire-server $got installed at $target ($((SECONDS - start))s)"
