#!/usr/bin/env bash
# Builds a kind node image with no registry: everything comes from the Go module proxy, the Debian
# mirror and this repository, and every control-plane image is preloaded, so
# `kind create cluster --image spiffe-broker/kind-node:v1.36.3` never pulls.
#
#   scripts/kind/node-image.sh            build what is missing or stale (warm: a few seconds)
#   FORCE=1 scripts/kind/node-image.sh    rebuild every step
#
# Steps, each cached under ${SPIFFE_BROKER_CACHE:-~/.cache/spiffe-broker}/kind and skipped when its
# inputs did not change:
#   1. Go binaries from the wrapper modules in scripts/go (committed go.sum files):
#      kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy
#      etcd (scripts/go/kube, k8s.io/kubernetes v1.36.3), containerd v2.4.0 + ctr + the runc shim,
#      crictl v1.37.0, the CNI plugins v1.10.0 (bridge, host-local, loopback, portmap), CoreDNS
#      v1.14.2, kind v0.33.0; and the pod sandbox `pause` (scripts/kind/pause.c, gcc -static).
#   2. A Debian bookworm rootfs (debootstrap minbase + systemd, iptables, runc ...) as a Docker image.
#   3. The images kubeadm v1.36.3 asks for (`kubeadm config images list`), built from those
#      binaries, saved to one tarball.
#   4. The node image: the rootfs, kind's own node files (entrypoint, systemd units, containerd
#      config) read from the kind v0.33.0 module in the Go module cache — never copied into this
#      repository — the binaries, a bridge CNI configuration, and the images imported into the
#      node's containerd (k8s.io namespace) by running containerd once in a build container.
#
# Without CAP_SYS_RESOURCE (the CI machines' docker, see scripts/kind/runc-drop-sys-resource) no
# process in the node may lower its oom_score_adj, and the kubelet asks -998 for every pod sandbox:
# the node's containerd therefore clamps oom_score_adj to its own (restrict_oom_score_adj = true,
# the setting kind uses for rootless nodes). Elsewhere the clamp costs nothing but that priority.
#
# The node runs one control-plane node per cluster with a static bridge CNI (so no CNI image is
# needed): create clusters with deploy/kind/cluster-offline.yaml (disableDefaultCNI, and
# failCgroupV1: false for hosts on cgroup v1, like the CI machines).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/kind"
bin="$cache/bin"
K=1.36.3
KIND_VERSION=v0.33.0
node_image="${KIND_NODE_IMAGE:-spiffe-broker/kind-node:v$K}"
rootfs_image=spiffe-broker/kind-rootfs:bookworm
static_image=spiffe-broker/kind-static:1
label=dev.spiffe-broker.kind.inputs
force="${FORCE:-0}"
mkdir -p "$bin" "$cache/images"

log() { printf '[node-image %3ds] %s\n' "$SECONDS" "$*"; }
# A digest of the files' contents (not their paths: a clone elsewhere reuses the cache).
sha() { cat "$@" | sha256sum | cut -c1-16; }
image_label() { docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null || true; }
fresh_image() { [ "$force" != 1 ] && [ "$(image_label "$1")" = "$2" ]; }

# --- 1. binaries ---------------------------------------------------------------------------------
go_build() { # <stamp name> <module dir> <inputs> -- go build args...
  local name="$1" dir="$2" inputs="$3" stamp="$bin/.$1.inputs"
  shift 4
  if [ "$force" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then return 0; fi
  log "building $name ..."
  (cd "$root/scripts/go/$dir" && CGO_ENABLED=0 go build -trimpath "$@")
  echo "$inputs" >"$stamp"
}

build_binaries() {
  local kv="-X k8s.io/component-base/version.gitVersion=v$K -X k8s.io/component-base/version.gitMajor=1"
  kv+=" -X k8s.io/component-base/version.gitMinor=36 -X k8s.io/component-base/version.gitTreeState=clean"
  kv+=" -X k8s.io/client-go/pkg/version.gitVersion=v$K"
  go_build kubernetes kube "$(sha "$root/scripts/go/kube/go.sum" "$0")" -- -ldflags "-s -w $kv" -o "$bin/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy
  go_build etcd kube "$(sha "$root/scripts/go/kube/go.sum" "$0")" -- -ldflags "-s -w" -o "$bin/etcd" \
    go.etcd.io/etcd/server/v3
  go_build containerd containerd "$(sha "$root/scripts/go/containerd/go.sum" "$0")" -- \
    -tags "no_aufs no_zfs no_btrfs no_devmapper" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=v2.4.0" -o "$bin/" \
    github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
  go_build crictl cri-tools "$(sha "$root/scripts/go/cri-tools/go.sum" "$0")" -- -ldflags "-s -w" \
    -o "$bin/crictl" sigs.k8s.io/cri-tools/cmd/crictl
  mkdir -p "$bin/cni"
  go_build cni cni-plugins "$(sha "$root/scripts/go/cni-plugins/go.sum" "$0")" -- -ldflags "-s -w" \
    -o "$bin/cni/" github.com/containernetworking/plugins/plugins/main/bridge \
    github.com/containernetworking/plugins/plugins/main/loopback \
    github.com/containernetworking/plugins/plugins/ipam/host-local \
    github.com/containernetworking/plugins/plugins/meta/portmap
  go_build coredns coredns "$(sha "$root/scripts/go/coredns/go.sum" "$0")" -- -ldflags "-s -w" \
    -o "$bin/coredns" github.com/coredns/coredns
  go_build kind kind "$(sha "$root/scripts/go/kind/go.sum" "$0")" -- -ldflags "-s -w" \
    -o "$bin/kind" sigs.k8s.io/kind
  local pause_inputs
  pause_inputs="$(sha "$root/scripts/kind/pause.c")"
  if [ "$force" = 1 ] || [ "$(cat "$bin/.pause.inputs" 2>/dev/null)" != "$pause_inputs" ]; then
    log "building pause ..."
    gcc -static -O2 -o "$bin/pause" "$root/scripts/kind/pause.c"
    echo "$pause_inputs" >"$bin/.pause.inputs"
  fi
}

# --- 2. rootfs -----------------------------------------------------------------------------------
packages=systemd,systemd-sysv,dbus,iptables,nftables,conntrack,iproute2,ethtool,util-linux,mount
packages+=,kmod,libseccomp2,ca-certificates,procps,runc,jq,socat,bash,pigz,e2fsprogs,iputils-ping

mirror() {
  local uri
  uri="${DEBIAN_MIRROR:-}"
  [ -n "$uri" ] || uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '{print $2}' | grep -v security | head -n 1 || true)"
  [ -n "$uri" ] || uri="$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$3 == "bookworm" {print $2}' | head -n 1 || true)"
  echo "${uri:-http://deb.debian.org/debian}"
}

build_rootfs() {
  local inputs work
  inputs="$(printf '%s\n' "$packages" "$(mirror)" | sha)"
  if fresh_image "$rootfs_image" "$inputs"; then return 0; fi
  command -v debootstrap >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  work="$(mktemp -d "$cache/rootfs.XXXXXX")"
  log "debootstrap bookworm (minbase + $packages) ..."
  if ! debootstrap --variant=minbase --include="$packages" bookworm "$work/rootfs" "$(mirror)" >"$work/log" 2>&1; then
    tail -n 30 "$work/log" >&2
    rm -rf "$work"
    return 1
  fi
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  tar -C "$work/rootfs" -c . | docker import --change "LABEL $label=$inputs" - "$rootfs_image" >/dev/null
  rm -rf "$work"
}

# --- 3. control-plane images ---------------------------------------------------------------------
# A base for static binaries: /tmp and the passwd/group entries a process may look up.
build_static_base() {
  local inputs=static-1 work
  if fresh_image "$static_image" "$inputs"; then return 0; fi
  work="$(mktemp -d "$cache/static.XXXXXX")"
  mkdir -p "$work/r/tmp" "$work/r/etc" "$work/r/var/run"
  chmod 1777 "$work/r/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$work/r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$work/r/etc/group"
  printf 'hosts: files dns\n' >"$work/r/etc/nsswitch.conf"
  tar -C "$work/r" -c . | docker import --change "LABEL $label=$inputs" - "$static_image" >/dev/null
  rm -rf "$work"
}

# docker build from a Dockerfile on stdin and a context directory of binaries.
image_from() { # <tag> <context> (Dockerfile on stdin)
  local tag="$1" ctx="$2"
  DOCKER_BUILDKIT=0 docker build -q -t "$tag" -f - "$ctx" >/dev/null
}

build_images() {
  local tarball="$cache/images/control-plane-v$K.tar" inputs ctx
  inputs="$(sha "$bin/kube-apiserver" "$bin/kube-controller-manager" "$bin/kube-scheduler" \
    "$bin/kube-proxy" "$bin/etcd" "$bin/coredns" "$bin/pause" "$0")-$(image_label "$rootfs_image")"
  if [ "$force" != 1 ] && [ -f "$tarball" ] && [ "$(cat "$tarball.inputs" 2>/dev/null)" = "$inputs" ]; then
    return 0
  fi
  build_static_base
  mapfile -t wanted < <("$bin/kubeadm" config images list --kubernetes-version "v$K")
  log "building ${#wanted[@]} control-plane images: ${wanted[*]##*/}"
  ctx="$(mktemp -d "$cache/images.XXXXXX")"
  cp "$bin/kube-apiserver" "$bin/kube-controller-manager" "$bin/kube-scheduler" "$bin/kube-proxy" \
    "$bin/etcd" "$bin/coredns" "$bin/pause" "$ctx/"
  # kube-proxy runs iptables from its image: use the backend (nft or legacy) the node's rules are
  # in, like the node's own iptables, or Services would be programmed where nothing reads them.
  cat >"$ctx/kube-proxy-wrapper" <<'EOF'
#!/bin/sh
legacy=$(iptables-legacy-save 2>/dev/null | grep -c '^-' || true)
nft=$(iptables-nft-save 2>/dev/null | grep -c '^-' || true)
mode=nft
[ "${legacy:-0}" -gt "${nft:-0}" ] && mode=legacy
for t in iptables ip6tables; do
  update-alternatives --set "$t" "/usr/sbin/$t-$mode" >/dev/null 2>&1 || true
done
exec /usr/local/libexec/kube-proxy "$@"
EOF
  chmod +x "$ctx/kube-proxy-wrapper"
  local images=() img name
  for img in "${wanted[@]}" registry.k8s.io/pause:3.10; do
    name="${img##*/}"
    name="${name%%:*}"
    case "$name" in
      kube-apiserver | kube-controller-manager | kube-scheduler | etcd)
        printf 'FROM %s\nCOPY %s /usr/local/bin/%s\n' "$static_image" "$name" "$name" | image_from "$img" "$ctx" ;;
      kube-proxy)
        printf 'FROM %s\nCOPY kube-proxy /usr/local/libexec/kube-proxy\nCOPY kube-proxy-wrapper /usr/local/bin/kube-proxy\n' \
          "$rootfs_image" | image_from "$img" "$ctx" ;;
      coredns)
        printf 'FROM %s\nCOPY coredns /coredns\nEXPOSE 53 53/udp\nENTRYPOINT ["/coredns"]\n' "$static_image" |
          image_from "$img" "$ctx" ;;
      pause)
        printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' | image_from "$img" "$ctx" ;;
      *)
        echo "error: kubeadm asks for an image this script cannot build: $img" >&2
        return 1 ;;
    esac
    images+=("$img")
  done
  docker save -o "$tarball.tmp" "${images[@]}"
  mv -f "$tarball.tmp" "$tarball"
  echo "$inputs" >"$tarball.inputs"
  rm -rf "$ctx"
}

# --- 4. node image -------------------------------------------------------------------------------
kind_files() { echo "$(cd "$root/scripts/go/kind" && go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION/images/base/files"; }

build_node() {
  local files inputs ctx cid
  files="$(kind_files)"
  if ! [ -f "$files/usr/local/bin/entrypoint" ]; then
    (cd "$root/scripts/go/kind" && go mod download sigs.k8s.io/kind)
  fi
  inputs="$(sha "$cache/images/control-plane-v$K.tar.inputs" "$bin/kubelet" "$bin/kubeadm" "$bin/kubectl" \
    "$bin/containerd" "$bin/ctr" "$bin/containerd-shim-runc-v2" "$bin/crictl" "$bin/cni/"* "$0")"
  if fresh_image "$node_image" "$inputs"; then
    log "$node_image is up to date"
    return 0
  fi
  ctx="$(mktemp -d "$cache/node.XXXXXX")"
  mkdir -p "$ctx/files" "$ctx/bin" "$ctx/cni"
  cp -a "$files/." "$ctx/files/"
  chmod -R u+w "$ctx/files"
  rm -rf "$ctx/files/LICENSES"
  cp "$bin/containerd" "$bin/ctr" "$bin/containerd-shim-runc-v2" "$bin/crictl" \
    "$bin/kubelet" "$bin/kubeadm" "$bin/kubectl" "$ctx/bin/"
  cp "$bin/cni/"* "$ctx/cni/"
  # One node per cluster: a plain bridge with host-local addresses from the node's pod range (kind's
  # default pod subnet) and masquerading, so no CNI daemon or image is needed.
  cat >"$ctx/10-bridge.conflist" <<'EOF'
{
  "cniVersion": "1.0.0",
  "name": "kind-offline",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.244.0.0/24" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
  cat >"$ctx/Dockerfile" <<EOF
FROM $rootfs_image
COPY files/ /
COPY bin/containerd bin/ctr bin/containerd-shim-runc-v2 bin/crictl /usr/local/bin/
COPY bin/kubelet bin/kubeadm bin/kubectl /usr/bin/
COPY cni/ /opt/cni/bin/
COPY 10-bridge.conflist /etc/cni/net.d/10-bridge.conflist
RUN set -e; chmod 0755 /usr/local/bin/* /usr/bin/kubelet /usr/bin/kubeadm /usr/bin/kubectl /kind/bin/*; \\
    rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*; \\
    find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete; \\
    echo ReadKMsg=no >>/etc/systemd/journald.conf; \\
    ln -sf /usr/lib/systemd/systemd /sbin/init; \\
    systemctl enable kubelet.service containerd.service undo-mount-hacks.service; \\
    systemctl mask systemd-binfmt.service; \\
    mkdir -p /etc/kubernetes/manifests /var/lib/containerd; \\
    ctr oci spec | jq '.hooks.createContainer += [{"path": "/kind/bin/mount-product-files.sh"}] | del(.process.rlimits)' \\
      >/etc/containerd/cri-base.json; \\
    echo v$K >/kind/version; \\
    sed -i 's/^\\(\\s*restrict_oom_score_adj\\s*=\\s*\\).*/\\1true/' /etc/containerd/config.toml; \\
    grep -q 'restrict_oom_score_adj = true' /etc/containerd/config.toml
ENV container=docker
STOPSIGNAL SIGRTMIN+3
LABEL $label=pending
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
EOF
  log "building the node image ..."
  DOCKER_BUILDKIT=0 docker build -q -t "$node_image-stage" "$ctx" >/dev/null
  # Preload the control-plane images: run containerd once in a build container and import them into
  # the k8s.io namespace (unpacked later by the node's own containerd), then commit.
  log "preloading the control-plane images into the node's containerd ..."
  cid="$(docker run -d --privileged --tmpfs /run --tmpfs /tmp --entrypoint sleep "$node_image-stage" infinity)"
  trap 'docker rm -f "$cid" >/dev/null 2>&1 || true; rm -rf "$ctx"' RETURN
  docker exec "$cid" sh -c 'containerd >/tmp/containerd.log 2>&1 &'
  local i
  for i in $(seq 1 60); do
    docker exec "$cid" ctr version >/dev/null 2>&1 && break
    [ "$i" = 60 ] && { docker exec "$cid" cat /tmp/containerd.log >&2; return 1; }
    sleep 0.5
  done
  docker exec -i "$cid" ctr --namespace=k8s.io images import --all-platforms --no-unpack \
    --label=io.cri-containerd.pinned=pinned - <"$cache/images/control-plane-v$K.tar" >/dev/null
  docker exec "$cid" ctr --namespace=k8s.io images list -q | sed 's/^/  preloaded /'
  docker exec "$cid" sh -c 'kill $(pidof containerd); while pidof containerd >/dev/null; do sleep 0.1; done'
  docker stop -t 1 "$cid" >/dev/null
  docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
    --change "LABEL $label=$inputs" "$cid" "$node_image" >/dev/null
  # The build container first: while it exists the stage tag cannot go (its layers stay, shared).
  docker rm -f "$cid" >/dev/null
  docker rmi "$node_image-stage" >/dev/null 2>&1 || true
  log "built $node_image ($(docker image inspect --format '{{.Size}}' "$node_image" | awk '{printf "%d MB", $1/1e6}'))"
}

build_binaries
build_rootfs
build_images
build_node
