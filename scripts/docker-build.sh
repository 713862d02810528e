#!/usr/bin/env bash
# Builds the container images of the project with the classic builder (DOCKER_BUILDKIT=0: Debian's
# docker.io has no buildx, and an air-gapped machine cannot pull BuildKit's frontend image).
#
#   scripts/docker-build.sh product   spiffe-broker:dev from ./Dockerfile on $NODE_IMAGE
#   scripts/docker-build.sh spire     spiffe-broker/spire-server:1.15.3, tests and labs only
#   scripts/docker-build.sh all       both (default)
#
# BUILD_CONTEXT: the source tree to build (default: this checkout).
# NODE_IMAGE defaults to the local stand-in built by scripts/docker-base-image.sh
# (spiffe-broker/node:24-bookworm-minbase); set NODE_IMAGE=node:24-bookworm-slim where Docker Hub
# is reachable. PRODUCT_IMAGE and SPIRE_IMAGE override the tags.
#
# npm's TLS: when $NPM_CA_FILE, $SSL_CERT_FILE or the host npm's `cafile` names a CA bundle (an intercepting proxy), it is
# copied into the build context as .npm-build-ca.pem for the builder stage only (build-arg
# NPM_CA_FILE) and removed again when the build ends; the runtime stage never sees it
# (test/container/image.test.ts checks every layer).
#
# The spire-server image is distroless-style: FROM scratch with the cgo-built binary from
# scripts/install-spire.sh, the shared libraries it links (from this machine, found with ldd), a
# passwd/group naming the SPIRE user 65533 and group 65533, and nothing else: no shell.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}"
product_image="${PRODUCT_IMAGE:-spiffe-broker:dev}"
spire_image="${SPIRE_IMAGE:-spiffe-broker/spire-server:1.15.3}"
node_image="${NODE_IMAGE:-spiffe-broker/node:24-bookworm-minbase}"
export DOCKER_BUILDKIT=0

build_product() {
  local start=$SECONDS ca_args=() ca_src="${NPM_CA_FILE:-${SSL_CERT_FILE:-}}"
  # Else the CA file the host's npm is configured with (prints "null"/"undefined" when unset).
  if [ -z "$ca_src" ] && command -v npm >/dev/null 2>&1; then ca_src="$(npm config get cafile 2>/dev/null || true)"; fi
  local context="${BUILD_CONTEXT:-$root}"
  local ctx_ca="$context/.npm-build-ca.pem"
  if [ -n "$ca_src" ] && [ -f "$ca_src" ]; then
    cp "$ca_src" "$ctx_ca"
    # shellcheck disable=SC2064
    trap "rm -f '$ctx_ca'" EXIT
    ca_args=(--build-arg NPM_CA_FILE=.npm-build-ca.pem)
  fi
  echo "building $product_image on $node_image (classic builder) ..."
  docker build --force-rm --build-arg "NODE_IMAGE=$node_image" "${ca_args[@]}" \
    --label "dev.spiffe-broker.node-image=$node_image" -t "$product_image" "$context" >"$cache/docker/product-build.log" 2>&1 ||
    {
      echo "error: docker build failed; the end of its log ($cache/docker/product-build.log):" >&2
      tail -n 40 "$cache/docker/product-build.log" >&2
      return 1
    }
  rm -f "$ctx_ca"
  local size base
  size="$(docker image inspect --format '{{.Size}}' "$product_image")"
  base="$(docker image inspect --format '{{.Size}}' "$node_image")"
  echo "built $product_image in $((SECONDS - start)) s: $(awk -v s="$size" -v b="$base" 'BEGIN{printf "%.1f MB, base %.1f MB, adds %.1f MB", s/1e6, b/1e6, (s-b)/1e6}')"
  # Dangling builder-stage images of earlier builds hold earlier CA copies; drop them.
  docker image prune -f >/dev/null 2>&1 || true
}

build_spire() {
  local start=$SECONDS bin="${SPIRE_SERVER_BIN:-$cache/bin/spire-server}"
  if ! [ -x "$bin" ]; then
    echo "error: $bin does not exist; run scripts/install-spire.sh first" >&2
    return 1
  fi
  local ctx
  ctx="$(mktemp -d "$cache/docker/spire-ctx.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" RETURN
  mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc/spire" "$ctx/rootfs/tmp" "$ctx/rootfs/run/spire" \
    "$ctx/rootfs/var/lib" "$ctx/spire-home/data" "$ctx/spire-socket"
  chmod 1777 "$ctx/rootfs/tmp"
  chmod 0700 "$ctx/spire-home" "$ctx/spire-home/data"
  chmod 0750 "$ctx/spire-socket"
  cp "$bin" "$ctx/rootfs/usr/local/bin/spire-server"
  # Debug symbols are half the binary and nothing in a test image reads them.
  if command -v strip >/dev/null 2>&1; then strip --strip-debug "$ctx/rootfs/usr/local/bin/spire-server"; fi
  # The dynamic loader and every library the cgo binary links, at their paths on this machine.
  ldd "$bin" | awk '/=> \// {print $3} /^[ \t]*\// {print $1}' | sort -u | while read -r lib; do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nspire:x:65533:65533:spire:/var/lib/spire:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
  printf 'root:x:0:\nspire:x:65533:\n' >"$ctx/rootfs/etc/group"
  # "files dns" keeps Go's pure resolver; docker supplies /etc/hosts and /etc/resolv.conf.
  printf 'hosts: files dns\n' >"$ctx/rootfs/etc/nsswitch.conf"
  cp "$root/test/container/spire-server/Dockerfile" "$ctx/Dockerfile"
  echo "building $spire_image from $bin (classic builder) ..."
  docker build --force-rm -t "$spire_image" --label "dev.spiffe-broker.spire-sha256=$(sha256sum "$bin" | cut -d' ' -f1)" "$ctx" \
    >"$cache/docker/spire-build.log" 2>&1 || {
    echo "error: docker build failed; the end of its log:" >&2
    tail -n 40 "$cache/docker/spire-build.log" >&2
    return 1
  }
  docker run --rm "$spire_image" --version 2>&1 | grep -qx 1.15.3 || {
    echo "error: $spire_image does not run spire-server 1.15.3" >&2
    return 1
  }
  echo "built $spire_image in $((SECONDS - start)) s: $(docker image inspect --format '{{.Size}}' "$spire_image" | awk '{printf "%.1f MB", $1/1e6}')"
}

mkdir -p "$cache/docker"
case "${1:-all}" in
  product) build_product ;;
  spire) build_spire ;;
  all)
    build_spire
    build_product
    ;;
  -h | --help) sed -n '2,20p' "$0" ;;
  *)
    echo "usage: $0 product|spire|all" >&2
    exit 2
    ;;
esac
