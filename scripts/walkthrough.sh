#!/usr/bin/env bash
# Federate two SPIRE servers by hand with two spiffe-broker daemons — exactly what
# docs/operations.md walks through; every block between `# >>> name` and `# <<< name` is quoted
# verbatim in that document (test/walkthrough/walkthrough.test.ts checks both ways and runs this).
#
#   SPIRE_SERVER=/path/to/spire-server SPIFFE_BROKER=/path/to/spiffe-broker scripts/walkthrough.sh
#
# Loopback only; every file under one temp dir; every process it starts is stopped on exit
# (trap), and every wait is bounded. Needs spire-server 1.15, openssl, jq, curl.
# KEEP_WORK=1 keeps the temp dir for inspection. Ports can be overridden (A_SPIRE_PORT, …).
set -euo pipefail

# >>> setup
SPIRE_SERVER="${SPIRE_SERVER:-spire-server}"       # SPIRE v1.15
SPIFFE_BROKER="${SPIFFE_BROKER:-spiffe-broker}"    # the installed CLI (§0)
WORK="$(mktemp -d /tmp/fed-XXXXXX)"                # short: unix socket paths must stay < 107 bytes
mkdir -p "$WORK/a" "$WORK/b" "$WORK/ca"

# Ports, all on 127.0.0.1: one set per trust domain, none shared.
A_SPIRE_PORT="${A_SPIRE_PORT:-18081}"      # spire-server td-a.test: server API (bind_port)
B_SPIRE_PORT="${B_SPIRE_PORT:-18082}"      # spire-server td-b.test
A_ENDPOINT_PORT="${A_ENDPOINT_PORT:-18443}"  # broker A's bundle endpoint (https_spiffe)
B_ENDPOINT_PORT="${B_ENDPOINT_PORT:-18444}"  # broker B's bundle endpoint (https_web)
A_ADMIN_PORT="${A_ADMIN_PORT:-18089}"      # broker A's admin API (status, metrics)
B_ADMIN_PORT="${B_ADMIN_PORT:-18189}"
A_VERIFY_PORT="${A_VERIFY_PORT:-18090}"    # broker A's verify API
B_VERIFY_PORT="${B_VERIFY_PORT:-18190}"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for <seconds> <what> <command…>: retries the command every 0.2 s, fails after <seconds>.
wait_for() {
  local limit="$1" what="$2" deadline=$((SECONDS + $1))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "gave up after ${limit}s waiting for: $what" >&2
      return 1
    fi
    sleep 0.2
  done
}
# <<< setup

# >>> spire-conf
# server.conf for one trust domain: loopback, SQLite datastore and disk key manager in $WORK.
write_server_conf() { # <dir> <trust domain> <bind port>
  cat >"$1/server.conf" <<EOF
server {
    trust_domain = "$2"
    bind_address = "127.0.0.1"
    bind_port = "$3"
    socket_path = "$1/api.sock"
    data_dir = "$1/data"
    log_level = "INFO"
    ca_key_type = "ec-p256"
    ca_ttl = "24h"
    default_x509_svid_ttl = "1h"
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "$1/data/datastore.sqlite3"
        }
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = "$1/data/keys.json"
        }
    }
}
EOF
}
write_server_conf "$WORK/a" td-a.test "$A_SPIRE_PORT"
write_server_conf "$WORK/b" td-b.test "$B_SPIRE_PORT"
# <<< spire-conf

# >>> spire-start
"$SPIRE_SERVER" run -config "$WORK/a/server.conf" >"$WORK/a/spire.log" 2>&1 &
pids+=("$!")
"$SPIRE_SERVER" run -config "$WORK/b/server.conf" >"$WORK/b/spire.log" 2>&1 &
pids+=("$!")
wait_for 30 "spire-server td-a.test healthy" "$SPIRE_SERVER" healthcheck -socketPath "$WORK/a/api.sock"
wait_for 30 "spire-server td-b.test healthy" "$SPIRE_SERVER" healthcheck -socketPath "$WORK/b/api.sock"
# <<< spire-start

# >>> bootstrap
# Broker B authenticates broker A's https_spiffe endpoint with td-a.test's bundle: take it once,
# out of band, from SPIRE A. After the first fetch broker B uses the bundles it fetched.
"$SPIRE_SERVER" bundle show -format spiffe -socketPath "$WORK/a/api.sock" >"$WORK/b/td-a.bundle.json"
# <<< bootstrap

# >>> private-ca
# Broker B serves https_web with a certificate from a private CA; broker A trusts that CA (caFile).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=walkthrough private CA" -keyout "$WORK/ca/ca.key" -out "$WORK/ca/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$WORK/b/endpoint.key" -out "$WORK/b/endpoint.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$WORK/b/endpoint.ext"
openssl x509 -req -in "$WORK/b/endpoint.csr" -CA "$WORK/ca/ca.crt" -CAkey "$WORK/ca/ca.key" \
  -CAcreateserial -days 2 -extfile "$WORK/b/endpoint.ext" -out "$WORK/b/endpoint.crt" 2>/dev/null
# <<< private-ca

# >>> broker-a
cat >"$WORK/a/broker.yaml" <<EOF
apiVersion: spiffe-broker.dev/v1
kind: BrokerConfig
trustDomain: td-a.test
stateDir: $WORK/a/broker-state
spire:
  servers:
    - name: spire-a
      address: unix://$WORK/a/api.sock
allowlist:
  file: $WORK/a/allowlist.yaml
endpoint:
  listen: 127.0.0.1:$A_ENDPOINT_PORT
  profile: https_spiffe          # X509-SVID spiffe://td-a.test/spiffe-broker, minted through spire-a
  refreshHint: 30s               # under one minute: the broker warns at start (see below)
admin:
  listen: 127.0.0.1:$A_ADMIN_PORT
verify:
  listen: 127.0.0.1:$A_VERIFY_PORT
EOF
cat >"$WORK/a/allowlist.yaml" <<EOF
apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peers:
  - trustDomain: td-b.test
    bundleEndpoint:
      urls: ["https://127.0.0.1:$B_ENDPOINT_PORT/"]
      profile: https_web
      caFile: $WORK/ca/ca.crt
    refresh: { minInterval: 1s, maxInterval: 5s }
EOF
# <<< broker-a

# >>> broker-b
cat >"$WORK/b/broker.yaml" <<EOF
apiVersion: spiffe-broker.dev/v1
kind: BrokerConfig
trustDomain: td-b.test
stateDir: $WORK/b/broker-state
spire:
  servers:
    - name: spire-b
      address: unix://$WORK/b/api.sock
allowlist:
  file: $WORK/b/allowlist.yaml
endpoint:
  listen: 127.0.0.1:$B_ENDPOINT_PORT
  profile: https_web
  certFile: $WORK/b/endpoint.crt
  keyFile: $WORK/b/endpoint.key
  refreshHint: 5m
admin:
  listen: 127.0.0.1:$B_ADMIN_PORT
verify:
  listen: 127.0.0.1:$B_VERIFY_PORT
EOF
cat >"$WORK/b/allowlist.yaml" <<EOF
apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peers:
  - trustDomain: td-a.test
    bundleEndpoint:
      urls: ["https://127.0.0.1:$A_ENDPOINT_PORT/"]
      profile: https_spiffe
      endpointSPIFFEID: spiffe://td-a.test/spiffe-broker
      bootstrapBundleFile: $WORK/b/td-a.bundle.json
    refresh: { minInterval: 1s, maxInterval: 5s }
EOF
cp "$WORK/b/allowlist.yaml" "$WORK/b/allowlist.full.yaml"   # kept to restore td-a.test later
# <<< broker-b

# >>> check-and-run
"$SPIFFE_BROKER" check-config "$WORK/a/broker.yaml"
"$SPIFFE_BROKER" check-config "$WORK/b/broker.yaml"
"$SPIFFE_BROKER" run --config "$WORK/a/broker.yaml" 2>"$WORK/a/broker.log" &
pids+=("$!")
"$SPIFFE_BROKER" run --config "$WORK/b/broker.yaml" 2>"$WORK/b/broker.log" &
pids+=("$!")
# <<< check-and-run

# >>> federated
# holds <dir> <trust domain> [text]: the SPIRE server in <dir> holds that trust domain's bundle
# (containing <text>, if given), read back from SPIRE itself.
holds() {
  "$SPIRE_SERVER" bundle list -format spiffe -id "spiffe://$2" -socketPath "$1/api.sock" >"$1/held.json" 2>&1 &&
    grep -q -- "${3:-}" "$1/held.json"
}
gone() { ! holds "$@"; }
wait_for 60 "SPIRE B to hold td-a.test's bundle" holds "$WORK/b" td-a.test
wait_for 60 "SPIRE A to hold td-b.test's bundle" holds "$WORK/a" td-b.test
"$SPIFFE_BROKER" status --admin "http://127.0.0.1:$A_ADMIN_PORT"
"$SPIFFE_BROKER" status --admin "http://127.0.0.1:$B_ADMIN_PORT"
echo "federated: SPIRE A holds td-b.test (https_web), SPIRE B holds td-a.test (https_spiffe)"
# <<< federated

# >>> refresh-hint-warning
grep 'refresh hint is below 1 minute' "$WORK/a/broker.log"
# <<< refresh-hint-warning

# >>> rotation
kid="$("$SPIRE_SERVER" localauthority jwt prepare -output json -socketPath "$WORK/a/api.sock" |
  jq -r .prepared_authority.authority_id)"
start=$SECONDS
wait_for 30 "the new JWT authority $kid in SPIRE B" holds "$WORK/b" td-a.test "\"kid\": *\"$kid\""
echo "rotation: JWT authority $kid prepared in SPIRE A is held by SPIRE B after ~$((SECONDS - start)) s"
# <<< rotation

# >>> revoke
# Remove td-a.test from broker B's allowlist (hot-reloaded): its bundle leaves SPIRE B.
printf 'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers: []\n' >"$WORK/b/allowlist.yaml"
wait_for 30 "td-a.test's bundle to leave SPIRE B" gone "$WORK/b" td-a.test
"$SPIFFE_BROKER" status --admin "http://127.0.0.1:$B_ADMIN_PORT"
echo "revoked: SPIRE B no longer holds td-a.test"
# <<< revoke

# >>> restore
cp "$WORK/b/allowlist.full.yaml" "$WORK/b/allowlist.yaml"
wait_for 30 "SPIRE B to hold td-a.test's bundle again" holds "$WORK/b" td-a.test
# <<< restore

# >>> revoke-blocked
# A registration entry in SPIRE B federates with td-a.test. SPIRE's default delete mode
# (restrict; the broker's reconcile.deleteMode) refuses to delete a bundle such entries use.
entry="$("$SPIRE_SERVER" entry create -socketPath "$WORK/b/api.sock" -output json \
  -parentID spiffe://td-b.test/walkthrough-node -spiffeID spiffe://td-b.test/web \
  -selector unix:uid:1000 -federatesWith spiffe://td-a.test | jq -r '.results[0].entry.id')"
printf 'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers: []\n' >"$WORK/b/allowlist.yaml"
peer_a() { # broker B's status of td-a.test, one JSON line
  "$SPIFFE_BROKER" status --json --admin "http://127.0.0.1:$B_ADMIN_PORT" |
    jq -c '.peers[] | select(.trustDomain == "td-a.test") | {state, reason, servers}'
}
removal_seen() { # broker B reports td-a.test in a state other than ACTIVE
  local state
  state="$(peer_a | jq -r .state)"
  [ -n "$state" ] && [ "$state" != ACTIVE ]
}
wait_for 30 "broker B to report td-a.test's removal" removal_seen
sleep 2   # a few more deletion attempts
holds "$WORK/b" td-a.test || { echo "SPIRE B deleted td-a.test although an entry federates with it" >&2; exit 1; }
echo "blocked revocation: $(peer_a)"
"$SPIFFE_BROKER" status --admin "http://127.0.0.1:$B_ADMIN_PORT"
curl -sS "http://127.0.0.1:$B_ADMIN_PORT/readyz"   # 503: not ready while a revocation is blocked
echo
# `spiffe-broker reconcile` runs a pass now; it exits 1 while anything is still blocked. It reads
# the admin token from the broker's state directory (found through --config).
if "$SPIFFE_BROKER" reconcile --admin "http://127.0.0.1:$B_ADMIN_PORT" --config "$WORK/b/broker.yaml"; then
  echo "reconcile should have reported the blocked revocation" >&2
  exit 1
fi
# <<< revoke-blocked

# >>> revoke-unblocked
# Fix: drop the federatesWith (here: delete the entry), then reconcile now instead of waiting for
# the broker's next retry; this time it exits 0.
"$SPIRE_SERVER" entry delete -entryID "$entry" -socketPath "$WORK/b/api.sock"
echo
"$SPIFFE_BROKER" reconcile --admin "http://127.0.0.1:$B_ADMIN_PORT" --config "$WORK/b/broker.yaml"
wait_for 45 "td-a.test's bundle to leave SPIRE B" gone "$WORK/b" td-a.test
echo "revoked after the entry was removed: $(peer_a)"
# <<< revoke-unblocked

echo "walkthrough: ok"
