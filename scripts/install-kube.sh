#!/usr/bin/env bash
# Builds a real kube-apiserver (k8s.io/kubernetes v1.36.3) and etcd (v3.6.8) from the Go module
# proxy into the project cache, for the Kubernetes integration tests. kind needs a container
# engine, which CI lacks, so tests run the real API server binary on loopback instead.
#
# The wrapper module scripts/go/kube pins every Kubernetes staging module to its published
# v0.36.3 with replace lines (k8s.io/kubernetes itself requires them at v0.0.0, which the proxy
# does not serve), and its committed go.sum makes the build reproducible. Idempotent: skips when
# both binaries exist and report the pinned versions; the Go build cache makes rebuilds quick.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/bin"
K=1.36.3
mkdir -p "$bin"
cd "$root/scripts/go/kube"
if [ -x "$bin/kube-apiserver" ] && "$bin/kube-apiserver" --version 2>/dev/null | grep -q "v$K"; then
  echo "kube-apiserver v$K already installed in $bin"
else
  echo "building kube-apiserver v$K (first build takes several minutes on 2 cores) ..."
  CGO_ENABLED=0 go build -trimpath -o "$bin/kube-apiserver" \
    -ldflags "-X k8s.io/component-base/version.gitVersion=v$K -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36" \
    k8s.io/kubernetes/cmd/kube-apiserver
  "$bin/kube-apiserver" --version
fi
if [ -x "$bin/etcd" ] && "$bin/etcd" --version 2>/dev/null | grep -q "3.6.8"; then
  echo "etcd 3.6.8 already installed in $bin"
else
  echo "building etcd 3.6.8 ..."
  CGO_ENABLED=0 go build -trimpath -o "$bin/etcd" go.etcd.io/etcd/server/v3
  "$bin/etcd" --version | head -1
fi
