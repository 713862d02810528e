#!/usr/bin/env bash
# Images of the offline kind lab (scripts/kind-lab.sh --offline), built on this machine:
#   spiffe-broker:lab                  the product image (spiffe-broker:dev, scripts/docker-build.sh)
#   spiffe-broker/spire-server:1.15.3  SPIRE's server (scripts/docker-build.sh spire)
#   spiffe-broker/spire-agent:1.15.3   SPIRE's agent, built here from scripts/go/spire
#   spiffe-broker/mtls-demo:lab        the example workload (scripts/go/mtls-demo, go-spiffe v2)
# The last two sit on the static base scripts/kind/node-image.sh makes (run it first). Go's build
# cache makes a warm run take seconds.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}"
bin="$cache/kind/bin"
static_image=spiffe-broker/kind-static:1
V=1.15.3
export DOCKER_BUILDKIT=0
mkdir -p "$bin"

if ! docker image inspect "$static_image" >/dev/null 2>&1; then
  echo "error: $static_image is missing: run scripts/kind/node-image.sh first" >&2
  exit 1
fi
for img in spiffe-broker:dev spiffe-broker/spire-server:$V; do
  if ! docker image inspect "$img" >/dev/null 2>&1; then
    echo "error: $img is missing: run scripts/ci-containers.sh first" >&2
    exit 1
  fi
done

echo "spire-agent $V and mtls-demo (go build) ..."
(cd "$root/scripts/go/spire" && CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X github.com/spiffe/spire/pkg/common/version.gittag=$V" \
  -o "$bin/spire-agent" github.com/spiffe/spire/cmd/spire-agent)
(cd "$root/scripts/go/mtls-demo" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/mtls-demo" .)

ctx="$(mktemp -d "$cache/kind/lab-images.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
cp "$bin/spire-agent" "$bin/mtls-demo" "$ctx/"
printf 'FROM %s\nCOPY spire-agent /usr/local/bin/spire-agent\nENTRYPOINT ["/usr/local/bin/spire-agent"]\n' "$static_image" |
  docker build -q -t "spiffe-broker/spire-agent:$V" -f - "$ctx" >/dev/null
printf 'FROM %s\nCOPY mtls-demo /usr/local/bin/mtls-demo\nUSER 65532:65532\nENTRYPOINT ["/usr/local/bin/mtls-demo"]\n' "$static_image" |
  docker build -q -t spiffe-broker/mtls-demo:lab -f - "$ctx" >/dev/null
docker tag spiffe-broker:dev spiffe-broker:lab
docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' |
  grep -E '^  spiffe-broker(:lab|/spire-server:|/spire-agent:|/mtls-demo:)' || true
