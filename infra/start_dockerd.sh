#!/usr/bin/env bash
# Start a Docker engine when none answers, on machines without systemd (CI runners, sandboxes).
#
#   pid=$(infra/start_dockerd.sh)   # the pid of the dockerd it started; nothing when one already answered
#   kill "$pid"                     # stop it again (only if you started it)
#
# Needs root and the docker.io package (apt-get install docker.io). Environment (optional):
#   DOCKERD_LOG      where dockerd writes its log  (default /tmp/ranker-dockerd.log)
#   DOCKERD_TIMEOUT  seconds to wait for it to answer (default 60)
set -euo pipefail

log=${DOCKERD_LOG:-/tmp/ranker-dockerd.log}
timeout=${DOCKERD_TIMEOUT:-60}

fail() { printf '[start_dockerd] %s\n' "$*" >&2; exit 1; }

docker info >/dev/null 2>&1 && exit 0
command -v docker >/dev/null || fail "no docker command: apt-get install docker.io"
command -v dockerd >/dev/null || fail "no Docker engine answers and dockerd is not installed: apt-get install docker.io"
[[ $(id -u) -eq 0 ]] || fail "no Docker engine answers, and starting dockerd needs root"

# setsid: the engine outlives this script and is not killed with the caller's process group.
setsid dockerd >"$log" 2>&1 </dev/null &
pid=$!
for ((waited = 0; waited < timeout; waited++)); do
  if docker info >/dev/null 2>&1; then
    echo "$pid"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || fail "dockerd exited at start; its log ($log) ends with: $(tail -n 5 "$log")"
  sleep 1
done
kill "$pid" 2>/dev/null || true
fail "dockerd did not answer within ${timeout}s; see $log"
