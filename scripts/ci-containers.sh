#!/usr/bin/env bash
# Everything the container suite (test/container/, part of `npm test`) needs, from a cold machine:
#
#   1. docker.io and a running dockerd           scripts/docker-daemon.sh start (apt-get when missing)
#   2. spire-server 1.15.3                       scripts/install-spire.sh (skips when installed)
#   3. the stand-in node:24 base image           scripts/docker-base-image.sh (debootstrap + npm
#                                                packages; skipped when its inputs did not change)
#   4. the spire-server test image               scripts/docker-build.sh spire
#   5. the product image spiffe-broker:dev       scripts/docker-build.sh product
#
# One build at a time (two cores). Any failure exits non-zero: under CI=true the container suite
# would fail anyway without docker or the images, and this makes the cause the first error in the
# log. The daemon keeps running for `npm test`; `scripts/docker-daemon.sh stop` stops it.
# Prints each step's time and the total (docs/containers.md has the cold and warm figures).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
start=$SECONDS
step() { printf '  -- [%ss] %s\n' "$((SECONDS - start))" "$*"; }

step "docker daemon"
bash "$root/scripts/docker-daemon.sh" start
step "spire-server binary"
bash "$root/scripts/install-spire.sh"
step "base image (stand-in for node:24-bookworm-slim)"
bash "$root/scripts/docker-base-image.sh"
step "spire-server image"
bash "$root/scripts/docker-build.sh" spire
step "product image"
bash "$root/scripts/docker-build.sh" product
step "container images ready in $((SECONDS - start)) s"
docker image ls --format '     {{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E 'spiffe-broker' || true
