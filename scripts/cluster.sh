#!/usr/bin/env bash
# The local cluster: deploy/compose/docker-compose.yml on this machine's
# Docker (started if none runs; scripts/docker_env.sh).
#   scripts/cluster.sh up [--prebuilt]   build the images when missing (or
#                                        always, with --prebuilt: from the
#                                        host's build, the fast way), start
#                                        everything, wait for Prometheus to
#                                        see every target, say where to look
#   scripts/cluster.sh status            containers, the pool (mkd status)
#   scripts/cluster.sh down              stop and remove everything (the
#                                        jobs' runs volume too), and the
#                                        Docker engine if `up` started it
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/docker_env.sh
compose=(docker-compose -p maskedkd -f deploy/compose/docker-compose.yml)
prom=http://127.0.0.1:9099
marker="${TMPDIR:-/tmp}/maskedkd-cluster-started-dockerd"  # up started the engine
# The certificates, the pool secret and the tokens; compose mounts them.
export MKD_SECRETS="$PWD/runs/cluster-secrets"
# mkd's flags to reach the pool: mutual TLS (the operator's certificate)
# and the operator's token.
pool_flags=(--tls-ca "$MKD_SECRETS/ca.pem" --tls-cert "$MKD_SECRETS/operator.pem"
  --tls-key "$MKD_SECRETS/operator.key" --tls-server-name maskedkd.pool
  --token-file "$MKD_SECRETS/operator.token")

mkd_status() {  # The pool as the coordinator sees it, through `mkd status`.
  if [[ -x build/bin/mkd ]]; then
    build/bin/mkd status --coordinator 127.0.0.1:50050 --timeout-s 3 "${pool_flags[@]}" || true
  else
    echo "(build/bin/mkd not built: docker-compose logs coordinator shows the pool)"
  fi
}

case "${1:-}" in
  up)
    prebuilt=0
    [[ "${2:-}" == --prebuilt ]] && prebuilt=1
    start=$(date +%s)
    docker_env_start
    if ((MKD_DOCKER_STARTED)); then touch "$marker"; fi
    if ((prebuilt)); then
      bash scripts/docker_images.sh --prebuilt
    elif ! docker image inspect maskedkd:latest maskedkd-coordinator:latest \
        maskedkd-prometheus:latest >/dev/null 2>&1; then
      bash scripts/docker_images.sh
    fi
    # A private CA and a certificate per component (the teachers' with the
    # teacher role a student requires), made once and renewed when older
    # than 20 of their 30 days.
    if [[ ! -s "$MKD_SECRETS/ca.pem" ]] || find "$MKD_SECRETS/ca.pem" -mtime +20 | grep -q .; then
      bash scripts/make_certs.sh "$MKD_SECRETS" ca
      bash scripts/make_certs.sh "$MKD_SECRETS" cert coordinator mkd-coordinator
      bash scripts/make_certs.sh "$MKD_SECRETS" role teacher teacher
      bash scripts/make_certs.sh "$MKD_SECRETS" cert student mkd-student
      bash scripts/make_certs.sh "$MKD_SECRETS" cert operator
    fi
    # Minted in the image, so `up` needs no host build; readable by the
    # containers' user (pool_secrets.sh makes every file in the folder 0644).
    bash scripts/pool_secrets.sh "$MKD_SECRETS" \
      "docker run --rm -i --network none maskedkd:latest mkd" job-a job-b
    up_start=$(date +%s)
    "${compose[@]}" up -d
    # Ready when Prometheus scrapes all five targets successfully.
    for _ in $(seq 1 120); do
      n=$(curl -fsS "$prom/api/v1/targets?state=active" 2>/dev/null \
          | /usr/bin/python3 -c 'import json,sys; t=json.load(sys.stdin)["data"]["activeTargets"]; print(sum(x["health"]=="up" for x in t))' \
          2>/dev/null || echo 0)
      [[ "$n" == 5 ]] && break
      sleep 1
    done
    if [[ "$n" != 5 ]]; then
      echo "cluster: only $n of 5 targets up after 120 s" >&2
      "${compose[@]}" ps >&2
      exit 1
    fi
    now=$(date +%s)
    echo "cluster: up in $((now - up_start)) s ($((now - start)) s with images)"
    cat <<MSG
  Prometheus     $prom  (targets: $prom/targets, alerts: $prom/alerts)
  the pool       build/bin/mkd status --coordinator 127.0.0.1:50050 ${pool_flags[*]}
  logs           docker-compose -p maskedkd -f deploy/compose/docker-compose.yml logs -f job-a
  stop           scripts/cluster.sh down
MSG
    ;;
  status)
    docker_env_start
    "${compose[@]}" ps
    mkd_status
    ;;
  down)
    docker_env_start
    "${compose[@]}" down --volumes --timeout 10
    left=$(docker ps -q --filter label=com.docker.compose.project=maskedkd)
    if [[ -n "$left" ]]; then echo "cluster: containers left: $left" >&2; exit 1; fi
    if [[ -f "$marker" ]]; then
      rm -f "$marker"
      MKD_DOCKER_STARTED=1
      docker_env_stop
      echo "cluster: down (and the Docker engine it started)"
    else
      echo "cluster: down"
    fi
    ;;
  *)
    echo "usage: scripts/cluster.sh up [--prebuilt] | status | down" >&2
    exit 2
    ;;
esac
