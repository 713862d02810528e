#!/usr/bin/env bash
# Two kind clusters, each with SPIRE from its official Helm charts (spiffe/helm-charts-hardened:
# spire-crds + spire) and spiffe-broker running beside the SPIRE server; the brokers federate the
# two trust domains (a.broker.test <-> b.broker.test) through FederationPeer objects, and an example
# client in cluster b calls an example server in cluster a over mTLS with SVIDs from each domain.
#
#   scripts/kind-lab.sh            create everything and run the mTLS check
#   scripts/kind-lab.sh --offline  the same with no registry and no chart repository: every image
#                                  built on this machine and loaded with `kind load`, SPIRE server
#                                  and agent from the project's manifests (deploy/kind/offline)
#   scripts/kind-lab.sh --dry-run  print every step, run nothing (no tools needed)
#   scripts/kind-lab.sh --down     delete both clusters
#
# Needs docker, kind, kubectl and helm (not for --dry-run; --offline builds kind and kubectl itself
# and needs no helm). The last line of --offline is one JSON object:
#   {"lab":"kind","ok":true,"clusters":2,"mtls":"ok","intruder":"refused","propagationMs":N}
# ("ok":false and the failing step otherwise). docs/kubernetes.md walks through both modes.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
kind_dir="$root/deploy/kind"
image="spiffe-broker:lab"
clusters=(a b)
SPIRE_CHART_VERSION="${SPIRE_CHART_VERSION:-0.25.0}"
SPIRE_CRDS_CHART_VERSION="${SPIRE_CRDS_CHART_VERSION:-0.6.0}"
CHART_REPO="https://spiffe.github.io/helm-charts-hardened/"

dry_run=false
offline=false
mode=up
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=true ;;
    --offline) offline=true ;;
    --down) mode=down ;;
    -h | --help)
      sed -n '2,19p' "$0"
      exit 0
      ;;
    *)
      echo "unknown argument: $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

step_no=0
step() {
  step_no=$((step_no + 1))
  printf '\n==> %d. %s\n' "$step_no" "$*"
}

# Runs a command, or prints it under --dry-run (quoted so it can be pasted).
run() {
  if "$dry_run"; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# Like run, with stdin from a here-document (printed too under --dry-run).
run_stdin() {
  local input
  input="$(cat)"
  if "$dry_run"; then
    printf '+'
    printf ' %q' "$@"
    printf ' <<EOF\n%s\nEOF\n' "$input"
  else
    printf '%s\n' "$input" | "$@"
  fi
}

# Captures a command's output, or a placeholder under --dry-run (the command is printed on fd 3,
# the script's stdout, since $(...) captures fd 1).
capture() {
  local placeholder="$1"
  shift
  if "$dry_run"; then
    printf '+ %s  # -> %s\n' "$(printf '%q ' "$@")" "$placeholder" >&3
    printf '%s' "$placeholder"
  else
    "$@"
  fi
}

ctx() { printf 'kind-spiffe-broker-%s' "$1"; }
td() { printf '%s.broker.test' "$1"; }
peer_of() { if [ "$1" = a ]; then printf b; else printf a; fi; }

# Creates or updates a namespace with labels (idempotent: re-running the lab is safe).
ensure_namespace() {
  local c="$1" name="$2"
  shift 2
  local labels="" kv
  for kv in "$@"; do
    labels+="$(printf '\n    %s: "%s"' "${kv%%=*}" "${kv#*=}")"
  done
  run_stdin kubectl --context "$(ctx "$c")" apply -f - <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $name
  labels:${labels}
EOF
}

# Each cluster's node address and SPIFFE bundle, into the maps `address` and `bundle`; $1 is the
# command that prints a cluster's bundle (SPIFFE format), given the cluster.
declare -A address bundle
collect_endpoints() {
  local bundle_of="$1" c
  for c in "${clusters[@]}"; do
    address[$c]="$(capture "<node address of cluster $c>" docker inspect \
      --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "spiffe-broker-$c-control-plane")"
    bundle[$c]="$(capture "<SPIFFE bundle of $(td "$c")>" "$bundle_of" "$c")"
  done
}

# The bundle of a cluster's SPIRE server installed by the official chart.
chart_bundle() {
  kubectl --context "$(ctx "$1")" -n spire-server exec statefulset/spire-server -c spire-server -- \
    /opt/spire/bin/spire-server bundle show -format spiffe -socketPath /tmp/spire-server/private/api.sock
}

# A FederationPeer in each cluster for the other one (its broker's endpoint on NodePort 30443 of
# the other node, https_spiffe, bootstrap bundle from collect_endpoints); waits until both Ready.
federate() {
  local c p
  for c in "${clusters[@]}"; do
    p="$(peer_of "$c")"
    run_stdin kubectl --context "$(ctx "$c")" apply -f - <<EOF
apiVersion: spiffe-broker.dev/v1alpha1
kind: FederationPeer
metadata:
  name: $p-broker-test
spec:
  trustDomain: $(td "$p")
  bundleEndpoint:
    urls: [https://${address[$p]}:30443]
    profile: https_spiffe
    endpointSPIFFEID: spiffe://$(td "$p")/spiffe-broker
    bootstrapBundle: |
$(printf '%s\n' "${bundle[$p]}" | sed 's/^/      /')
EOF
  done
  for c in "${clusters[@]}"; do
    run kubectl --context "$(ctx "$c")" wait --for=condition=Ready \
      "federationpeer/$(peer_of "$c")-broker-test" --timeout 5m
    run kubectl --context "$(ctx "$c")" get federationpeers
  done
}

# Tells the demo client in cluster b where the server of cluster a is (ConfigMap mtls-target).
mtls_target() {
  run_stdin kubectl --context "$(ctx b)" apply -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: mtls-target
  namespace: mtls-demo
data:
  address: "${address[a]}"
EOF
}

require_tools() {
  "$dry_run" && return 0
  local missing=() tools=(docker kind kubectl helm)
  if "$offline"; then tools=(docker go); fi
  for t in "${tools[@]}"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "missing tools: ${missing[*]} (or use --dry-run)" >&2
    exit 1
  fi
}

down() {
  step "delete the lab clusters"
  for c in "${clusters[@]}"; do
    run kind delete cluster --name "spiffe-broker-$c"
  done
}

up() {
  step "build the broker image"
  run docker build -t "$image" "$root"

  step "create two kind clusters and load the image"
  for c in "${clusters[@]}"; do
    run kind create cluster --name "spiffe-broker-$c" --config "$kind_dir/cluster.yaml" --wait 120s
    run kind load docker-image "$image" --name "spiffe-broker-$c"
  done

  step "namespaces, the FederationPeer CRD and the broker's RBAC, Services and config"
  for c in "${clusters[@]}"; do
    local k=(kubectl --context "$(ctx "$c")")
    ensure_namespace "$c" spire-server pod-security.kubernetes.io/enforce=restricted
    # The SPIRE agent and CSI driver need host access.
    ensure_namespace "$c" spire-system pod-security.kubernetes.io/enforce=privileged
    ensure_namespace "$c" mtls-demo pod-security.kubernetes.io/enforce=restricted spiffe-broker.dev/bundles=enabled
    run "${k[@]}" apply -f "$root/deploy/base/crd-federationpeer.yaml"
    run "${k[@]}" apply -k "$kind_dir/$c"
  done

  step "install SPIRE from the official charts (the broker runs in the SPIRE server pod)"
  for c in "${clusters[@]}"; do
    run helm --kube-context "$(ctx "$c")" upgrade --install spire-crds spire-crds \
      --repo "$CHART_REPO" --version "$SPIRE_CRDS_CHART_VERSION" --namespace spire-server
    run helm --kube-context "$(ctx "$c")" upgrade --install spire spire \
      --repo "$CHART_REPO" --version "$SPIRE_CHART_VERSION" --namespace spire-server \
      --values "$kind_dir/spire-values.yaml" --values "$kind_dir/$c/spire-values.yaml" \
      --wait --timeout 10m
    run kubectl --context "$(ctx "$c")" -n spire-server rollout status statefulset/spire-server --timeout 5m
  done

  step "collect each side's bundle endpoint address and bootstrap bundle"
  collect_endpoints chart_bundle

  step "federate: a FederationPeer for the other trust domain in each cluster"
  federate

  step "the example services: a server in cluster a, a client in cluster b"
  run kubectl --context "$(ctx a)" apply -f "$kind_dir/demo/helper-config.yaml" -f "$kind_dir/demo/server.yaml"
  run kubectl --context "$(ctx a)" -n mtls-demo rollout status deployment/mtls-server --timeout 5m
  mtls_target
  run kubectl --context "$(ctx b)" apply -f "$kind_dir/demo/helper-config.yaml" -f "$kind_dir/demo/client.yaml"

  step "check: cross-cluster mTLS with each trust domain's own SVIDs and the peer's bundle"
  run kubectl --context "$(ctx b)" -n mtls-demo wait --for=condition=Complete job/mtls-client --timeout 5m
  run kubectl --context "$(ctx b)" -n mtls-demo logs job/mtls-client
  echo
  echo "done: a.broker.test and b.broker.test federate through spiffe-broker."
  echo "tear down with: $0 --down"
}

# shellcheck source=scripts/kind/offline-lab.sh
. "$root/scripts/kind/offline-lab.sh"

exec 3>&1
require_tools
if "$dry_run"; then
  echo "dry run: printing every step; nothing is executed"
fi
if "$offline"; then
  # kind and kubectl built by scripts/kind/node-image.sh, first on PATH.
  PATH="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/kind/bin:$PATH"
fi
if [ "$mode" = down ]; then
  down
elif "$offline"; then
  up_offline
else
  up
fi
