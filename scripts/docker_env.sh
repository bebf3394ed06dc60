# Sourced by the Docker scripts: makes sure a Docker engine answers, and
# exports DOCKER_HOST for it (through sudo when not run as root). An engine that already answers (DOCKER_HOST,
# or the default socket) is used as it is. Otherwise one is started as
# a development machine without systemd needs: as root, no bridge, no
# iptables (everything uses the host network), its data under
# $MKD_DOCKER_ROOT (default /var/lib/maskedkd-docker, so images stay cached
# between runs). MKD_DOCKER_STARTED=1 then tells the caller to stop it
# (docker_env_stop) when done.
MKD_DOCKER_ROOT="${MKD_DOCKER_ROOT:-/var/lib/maskedkd-docker}"
MKD_DOCKER_STARTED=0

docker_env_start() {
  if docker info >/dev/null 2>&1; then return 0; fi
  export DOCKER_HOST="unix://$MKD_DOCKER_ROOT/docker.sock"
  if docker info >/dev/null 2>&1; then return 0; fi
  if ! command -v dockerd >/dev/null; then
    echo "docker: no engine answers and dockerd is not installed (scripts/setup.sh installs docker.io)" >&2
    return 1
  fi
  # dockerd needs root; a non-root caller (CI with sudo) gets the socket
  # through its own group.
  local as_root=() group=()
  if [[ $(id -u) -ne 0 ]]; then as_root=(sudo); group=(--group "$(id -gn)"); fi
  ${as_root[@]+"${as_root[@]}"} mkdir -p "$MKD_DOCKER_ROOT"
  ${as_root[@]+"${as_root[@]}"} dockerd ${group[@]+"${group[@]}"} --data-root "$MKD_DOCKER_ROOT/data" --exec-root "$MKD_DOCKER_ROOT/exec" \
    --pidfile "$MKD_DOCKER_ROOT/dockerd.pid" -H "$DOCKER_HOST" \
    --bridge=none --iptables=false --ip-masq=false >"${TMPDIR:-/tmp}/maskedkd-dockerd.log" 2>&1 &
  MKD_DOCKER_STARTED=1
  for _ in $(seq 1 120); do
    if docker info >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "docker: dockerd did not answer within 60 s; see ${TMPDIR:-/tmp}/maskedkd-dockerd.log" >&2
  tail -n 20 "${TMPDIR:-/tmp}/maskedkd-dockerd.log" >&2 || true
  return 1
}

docker_env_stop() {
  if [[ "$MKD_DOCKER_STARTED" == 1 && -f "$MKD_DOCKER_ROOT/dockerd.pid" ]]; then
    local pid
    local as_root=()
    if [[ $(id -u) -ne 0 ]]; then as_root=(sudo); fi
    pid=$(cat "$MKD_DOCKER_ROOT/dockerd.pid")
    ${as_root[@]+"${as_root[@]}"} kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do [[ -d /proc/$pid ]] || return 0; sleep 0.5; done
    ${as_root[@]+"${as_root[@]}"} kill -9 "$pid" 2>/dev/null || true
  fi
}
