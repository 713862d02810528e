# shellcheck shell=bash
# shellcheck disable=SC2154 # root, kind_dir, clusters and dry_run are set by scripts/kind-lab.sh
# The offline mode of scripts/kind-lab.sh (`--offline`), sourced by it: it uses that script's
# helpers (step, run, run_stdin, capture, ctx, td, peer_of, ensure_namespace) and variables (root,
# kind_dir, clusters, dry_run). Nothing is pulled and no chart is downloaded:
#   - the kind node image and kind/kubectl come from scripts/kind/node-image.sh, the other images
#     from scripts/ci-containers.sh and scripts/kind/lab-images.sh, all loaded with `kind load`;
#   - SPIRE server (the broker a container of its pod) and agent from deploy/kind/offline;
#   - workloads get X509-SVIDs from their SPIRE agent by workload attestation (k8s attestor).
# It ends with one JSON line: {"lab":"kind","ok":true,...} or {"lab":"kind","ok":false,"step":...}.

offline_images=(spiffe-broker:lab spiffe-broker/spire-server:1.15.3 spiffe-broker/spire-agent:1.15.3
  spiffe-broker/mtls-demo:lab)
offline_step="start"
offline_done=false

# The JSON verdict, printed last whatever happens (an EXIT trap: set -e failures included).
offline_verdict() {
  local rc=$?
  "$dry_run" && return 0
  if "$offline_done"; then return 0; fi
  printf '{"lab":"kind","ok":false,"clusters":2,"step":"%s","exitCode":%d}\n' "${offline_step//\"/\'}" "$rc"
}

# Each step's wall time, printed at the end (docs/kubernetes.md quotes them).
offline_timings=()
offline_step_started=""
ostep() {
  offline_step_done
  offline_step="$*"
  offline_step_started=$(now_ms)
  step "$*"
}
offline_step_done() {
  if [ -n "$offline_step_started" ]; then
    offline_timings+=("$(printf '%6.1f s  %s' "$(($(now_ms) - offline_step_started))e-3" "$offline_step")")
  fi
}

spire_cli() { # <cluster> <spire-server args...>
  local c="$1"
  shift
  kubectl --context "$(ctx "$c")" -n spire-server exec spire-server-0 -c spire-server -- \
    /usr/local/bin/spire-server "$@" -socketPath /run/spire/sockets/api.sock
}

now_ms() { date +%s%3N; }

# The SPIFFE bundle of a cluster's SPIRE server (deploy/kind/offline).
spire_bundle() { spire_cli "$1" bundle show -format spiffe; }

up_offline() {
  trap offline_verdict EXIT
  local t0 c k
  t0=$(now_ms)

  ostep "build the images here: kind node image, product, SPIRE server and agent, demo workload"
  run bash "$root/scripts/kind/node-image.sh"
  run bash "$root/scripts/ci-containers.sh"
  run bash "$root/scripts/kind/lab-images.sh"

  ostep "create two kind clusters from the offline node image and load the images (nothing pulled)"
  for c in "${clusters[@]}"; do
    if ! "$dry_run" && kind get clusters 2>/dev/null | grep -qx "spiffe-broker-$c"; then
      echo "cluster spiffe-broker-$c exists: reusing it"
    else
      run kind create cluster --name "spiffe-broker-$c" --image "${KIND_NODE_IMAGE:-spiffe-broker/kind-node:v1.36.3}" \
        --config "$kind_dir/cluster-offline.yaml" --wait 180s
    fi
    run kind load docker-image "${offline_images[@]}" --name "spiffe-broker-$c"
  done

  ostep "namespaces, the FederationPeer CRD, the broker's RBAC, Services and config, SPIRE server and agent"
  for c in "${clusters[@]}"; do
    k=(kubectl --context "$(ctx "$c")")
    ensure_namespace "$c" spire-server pod-security.kubernetes.io/enforce=restricted
    ensure_namespace "$c" spire-system pod-security.kubernetes.io/enforce=privileged
    # The demo workloads mount the agent's socket directory from the node (hostPath).
    ensure_namespace "$c" mtls-demo pod-security.kubernetes.io/enforce=privileged spiffe-broker.dev/bundles=enabled
    for ns in spire-server spire-system; do
      run_stdin "${k[@]}" apply -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: lab-cluster
  namespace: $ns
data:
  trustDomain: $(td "$c")
  clusterName: lab-$c
EOF
    done
    run "${k[@]}" apply -f "$root/deploy/base/crd-federationpeer.yaml"
    run "${k[@]}" apply -k "$kind_dir/$c"
    run "${k[@]}" apply -k "$kind_dir/offline"
  done
  for c in "${clusters[@]}"; do
    run kubectl --context "$(ctx "$c")" -n spire-server rollout status statefulset/spire-server --timeout 5m
  done

  ostep "SPIRE agents: bootstrap bundle from the server, then node attestation (k8s_psat)"
  for c in "${clusters[@]}"; do
    local pem
    pem="$(capture "<X.509 bundle of $(td "$c")>" spire_cli "$c" bundle show)"
    run_stdin kubectl --context "$(ctx "$c")" -n spire-system apply -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: spire-bundle
  namespace: spire-system
data:
  bundle.crt: |
$(printf '%s\n' "$pem" | sed 's/^/    /')
EOF
  done
  for c in "${clusters[@]}"; do
    run kubectl --context "$(ctx "$c")" -n spire-system rollout status daemonset/spire-agent --timeout 5m
  done

  ostep "collect each side's bundle endpoint address and bootstrap bundle"
  collect_endpoints spire_bundle

  ostep "federate: a FederationPeer for the other trust domain in each cluster"
  federate

  ostep "registration entries: the node, and each demo workload federating with the other domain"
  local p
  for c in "${clusters[@]}"; do
    p="$(peer_of "$c")"
    local sa="mtls-server"
    [ "$c" = b ] && sa="mtls-client"
    if "$dry_run" || ! spire_cli "$c" entry show -spiffeID "spiffe://$(td "$c")/lab-node" 2>/dev/null | grep -q "Entry ID"; then
      run spire_cli "$c" entry create -node -spiffeID "spiffe://$(td "$c")/lab-node" -selector "k8s_psat:cluster:lab-$c"
    fi
    if "$dry_run" || ! spire_cli "$c" entry show -spiffeID "spiffe://$(td "$c")/ns/mtls-demo/sa/$sa" 2>/dev/null | grep -q "Entry ID"; then
      run spire_cli "$c" entry create -parentID "spiffe://$(td "$c")/lab-node" \
        -spiffeID "spiffe://$(td "$c")/ns/mtls-demo/sa/$sa" \
        -selector k8s:ns:mtls-demo -selector "k8s:sa:$sa" -federatesWith "spiffe://$(td "$p")"
    fi
  done

  ostep "the example server in cluster a"
  run kubectl --context "$(ctx a)" apply -f "$kind_dir/offline/demo/server.yaml"
  run kubectl --context "$(ctx a)" -n mtls-demo rollout status deployment/mtls-server --timeout 5m

  ostep "the client and an intruder in cluster b call it"
  mtls_target
  run kubectl --context "$(ctx b)" -n mtls-demo delete job mtls-client mtls-intruder --ignore-not-found
  run kubectl --context "$(ctx b)" apply -f "$kind_dir/offline/demo/client.yaml"
  local mtls intruder
  run kubectl --context "$(ctx b)" -n mtls-demo wait --for=condition=Complete job/mtls-client --timeout 5m
  mtls="$(capture '{"mtls":"ok"}' kubectl --context "$(ctx b)" -n mtls-demo logs job/mtls-client | tail -n 1)"
  echo "client: $mtls"
  run kubectl --context "$(ctx b)" -n mtls-demo wait --for=condition=Complete job/mtls-intruder --timeout 5m
  intruder="$(capture '{"intruder":"refused"}' kubectl --context "$(ctx b)" -n mtls-demo logs job/mtls-intruder | tail -n 1)"
  echo "intruder: $intruder"
  case "$mtls" in *'"mtls":"ok"'*) ;; *) echo "the client's call failed" >&2; return 1 ;; esac
  case "$intruder" in *'"intruder":"refused"'*) ;; *) echo "the intruder was admitted" >&2; return 1 ;; esac

  ostep "rotation: a JWT authority prepared in cluster a, timed until cluster b's SPIRE server holds it"
  local kid="" started elapsed=0
  if "$dry_run"; then
    run spire_cli a localauthority jwt prepare -output json
    printf '+ until spire-server bundle list -id spiffe://%s (cluster b) shows the new key ID\n' "$(td a)"
  else
    kid="$(spire_cli a localauthority jwt prepare -output json | grep -o '"authority_id": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/')"
    started=$(now_ms)
    [ -n "$kid" ] || { echo "no authority ID in the prepare output" >&2; return 1; }
    until spire_cli b bundle list -id "spiffe://$(td a)" -format spiffe 2>/dev/null | grep -q "\"kid\": *\"$kid\""; do
      elapsed=$(($(now_ms) - started))
      if [ "$elapsed" -gt 60000 ]; then
        echo "JWT authority $kid did not reach cluster b within 60 s" >&2
        return 1
      fi
    done
    elapsed=$(($(now_ms) - started))
    echo "JWT authority $kid prepared in $(td a) reached $(td b)'s SPIRE server in $elapsed ms"
  fi

  offline_step_done
  echo
  if ! "$dry_run"; then
    echo "step timings:"
    printf '  %s\n' "${offline_timings[@]}"
  fi
  echo "done in $((($(now_ms) - t0) / 1000)) s: a.broker.test and b.broker.test federate through spiffe-broker."
  echo "tear down with: $0 --down"
  offline_done=true
  if ! "$dry_run"; then
    printf '{"lab":"kind","ok":true,"clusters":2,"mtls":"ok","intruder":"refused","propagationMs":%d}\n' "$elapsed"
  fi
}
