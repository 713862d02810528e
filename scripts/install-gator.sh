#!/usr/bin/env bash
# Builds gator v3.23.1 (github.com/open-policy-agent/gatekeeper/v3/cmd/gator, Gatekeeper's offline
# CLI) from the Go module proxy into the project cache, for test/deploy/policy-engines.test.ts: it
# runs `gator verify` on the Gatekeeper example in deploy/examples/policies/gatekeeper. The wrapper
# module scripts/go/gator pins it with a committed go.sum. Idempotent: skips when the cached binary
# reports the pinned version. About 2.5 min cold on 2 cores, seconds warm.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/bin"
V=v3.23.1
mkdir -p "$bin"
if [ -x "$bin/gator" ] && "$bin/gator" --version 2>/dev/null | grep -q "^gator version $V "; then
  echo "gator $V already installed in $bin"
  exit 0
fi
echo "building gator $V ..."
cd "$root/scripts/go/gator"
CGO_ENABLED=0 go build -trimpath -o "$bin/gator" \
  -ldflags "-X github.com/open-policy-agent/gatekeeper/v3/pkg/version.Version=$V" \
  github.com/open-policy-agent/gatekeeper/v3/cmd/gator
"$bin/gator" --version
