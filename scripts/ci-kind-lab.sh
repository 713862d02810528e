#!/usr/bin/env bash
# CI's end-to-end run of the offline kind lab (.ci/run): `scripts/kind-lab.sh --offline`, whose last
# line must be the JSON verdict with "ok":true, then `--down` whatever happened. The whole output
# is kept in ${SPIFFE_BROKER_CACHE:-~/.cache/spiffe-broker}/kind/lab.log; on failure its end, the
# clusters' pods and the failing step are printed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
log="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/kind/lab.log"
mkdir -p "$(dirname "$log")"
PATH="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/kind/bin:$PATH"

cleanup() { bash "$root/scripts/kind-lab.sh" --offline --down >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup # a lab left by an earlier, interrupted run

start=$SECONDS
status=0
bash "$root/scripts/kind-lab.sh" --offline >"$log" 2>&1 || status=$?
verdict="$(tail -n 1 "$log")"
grep -E '^(==>|step timings:|  +[0-9.]+ s  |client:|intruder:|JWT authority|done in)' "$log" || true
echo "verdict: $verdict"
echo "kind lab (offline) took $((SECONDS - start)) s"
if [ "$status" -ne 0 ] || ! printf '%s' "$verdict" | grep -q '^{"lab":"kind","ok":true,"clusters":2,"mtls":"ok","intruder":"refused","propagationMs":[0-9]*}$'; then
  echo "error: the offline kind lab failed (exit $status); the end of $log:" >&2
  tail -n 60 "$log" >&2
  for c in a b; do
    kubectl --context "kind-spiffe-broker-$c" get pods -A -o wide >&2 2>/dev/null || true
  done
  exit 1
fi
ms="${verdict##*\"propagationMs\":}"
ms="${ms%\}}"
if [ "$ms" -ge 2000 ]; then
  echo "error: the JWT authority took $ms ms to reach the other cluster's SPIRE server (goal: < 2 s)" >&2
  exit 1
fi
