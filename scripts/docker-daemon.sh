#!/usr/bin/env bash
# Installs and starts a Docker daemon for the container suite (test/container/), idempotently.
#
#   scripts/docker-daemon.sh start    install docker.io if dockerd is missing, start dockerd unless
#                                     a daemon already answers; prints the daemon's version
#   scripts/docker-daemon.sh stop     stop the dockerd THIS script started (its pid file), nothing else
#   scripts/docker-daemon.sh status   exit 0 when a daemon answers `docker version`
#
# The daemon it starts: dockerd as root, overlay2 storage, cgroupfs cgroup driver (these machines
# run cgroup v1 without systemd), its own managed containerd, log in
# ${SPIFFE_BROKER_CACHE:-~/.cache/spiffe-broker}/docker/dockerd.log. A daemon that was already
# running (systemd, another session) is used as it is and never stopped by `stop`.
#
# Needs root (apt-get, dockerd). Debian's docker.io is 20.10 (API 1.41): a newer docker CLI on PATH
# negotiates down to it. There is no buildx there, so builds use the classic builder
# (DOCKER_BUILDKIT=0), which is what scripts/docker-build.sh does.
set -euo pipefail

cache="${SPIFFE_BROKER_CACHE:-$HOME/.cache/spiffe-broker}/docker"
pidfile="$cache/dockerd.pid"
log="$cache/dockerd.log"

shim="$(cd "$(dirname "$0")" && pwd)/kind/runc-drop-sys-resource"

# True when the capability bounding set of this process lacks CAP_SYS_RESOURCE (capability 24), as
# on the CI machines (themselves containers): `docker run --privileged` then fails in runc.
lacks_sys_resource() {
  local bnd
  bnd="$(awk '/^CapBnd:/ {print $2}' /proc/self/status)"
  [ -n "$bnd" ] && (((0x$bnd >> 24 & 1) == 0))
}

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install_docker() {
  if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    echo "error: dockerd is not installed and installing docker.io needs root" >&2
    return 1
  fi
  echo "installing docker.io from the Debian mirror ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq docker.io >/dev/null
}

start() {
  if answers; then
    echo "docker daemon already running: $(docker version --format '{{.Server.Version}}')"
    return 0
  fi
  install_docker
  if [ "$(id -u)" != 0 ]; then
    echo "error: no docker daemon answers and starting dockerd needs root" >&2
    return 1
  fi
  mkdir -p "$cache"
  # A stale pid file from a daemon that died (or a machine that was handed over) is removed; a
  # live process that owns it but does not answer yet is waited for below.
  if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then rm -f "$pidfile"; fi
  if ! [ -f "$pidfile" ]; then
    echo "starting dockerd (overlay2, cgroupfs; log $log) ..."
    local runtime_flags=()
    if lacks_sys_resource; then
      # Test infrastructure of these machines only: see scripts/kind/runc-drop-sys-resource.
      echo "this machine's capability bounding set lacks CAP_SYS_RESOURCE: --privileged containers run through scripts/kind/runc-drop-sys-resource"
      runtime_flags=(--add-runtime "runc-drop-sys-resource=$shim" --default-runtime runc-drop-sys-resource)
    fi
    # setsid: the daemon outlives this script and is not in the caller's process group.
    setsid dockerd \
      --storage-driver overlay2 \
      --exec-opt native.cgroupdriver=cgroupfs \
      "${runtime_flags[@]}" \
      --pidfile "$cache/dockerd.self.pid" \
      >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
  fi
  for _ in $(seq 1 120); do
    if answers; then
      echo "docker daemon $(docker version --format '{{.Server.Version}}') ready (pid $(cat "$pidfile"))"
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "error: dockerd exited; the end of its log:" >&2
      tail -n 30 "$log" >&2
      rm -f "$pidfile"
      return 1
    fi
    sleep 0.5
  done
  echo "error: dockerd did not answer within 60 s; the end of its log:" >&2
  tail -n 30 "$log" >&2
  return 1
}

stop() {
  if ! [ -f "$pidfile" ]; then
    echo "no dockerd started by this script (no $pidfile); nothing to stop"
    return 0
  fi
  local pid
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    echo "stopping dockerd (pid $pid) ..."
    kill -TERM "$pid"
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "dockerd did not stop within 30 s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  -h | --help) sed -n '2,17p' "$0" ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
