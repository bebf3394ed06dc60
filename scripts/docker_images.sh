#!/usr/bin/env bash
# Builds maskedkd's images from docker/Dockerfile (classic builder, host
# network) and prints their sizes:
#   maskedkd:latest              mkd-teacher, mkd-student, mkd, on LibTorch
#   maskedkd-coordinator:latest  mkd-coordinator and mkd-health, no LibTorch
#   maskedkd-prometheus:latest   Debian's Prometheus (the local cluster's)
#   scripts/docker_images.sh [--prebuilt] [--base IMAGE]
# Without --prebuilt the Dockerfile's build stage compiles everything
# (setup.sh --build-only, CMake Release): the image CI users deploy.
# --prebuilt builds the host's binaries first (build/, the tests' build)
# and copies them, stripped, into the image instead: the cluster test's
# way, which spares CI a second full compile. Both run on Debian 12 with
# the same packages, so the binaries are the same program either way.
# --base defaults to the local maskedkd-base:bookworm (scripts/docker_base.sh
# makes it when missing); pass debian:bookworm-slim where a registry is.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/docker_env.sh
prebuilt=0
base=maskedkd-base:bookworm
while (($#)); do
  case "$1" in
    --prebuilt) prebuilt=1 ;;
    --base) base=$2; shift ;;
    *) echo "usage: scripts/docker_images.sh [--prebuilt] [--base IMAGE]" >&2; exit 2 ;;
  esac
  shift
done
docker_env_start
if [[ "$base" == maskedkd-base:* ]]; then bash scripts/docker_base.sh "$base"; fi

args=(--network host --build-arg "BASE=$base" -f docker/Dockerfile)
rm -rf build/docker-bin
if ((prebuilt)); then
  # MKD_BUILD_DIR: the host build to take the binaries from (the tests'
  # own: scripts/sanitize.sh's is build-asan). The copies always go to
  # build/docker-bin, where the Dockerfile looks.
  from="${MKD_BUILD_DIR:-build}"
  export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
  [[ -f "$from/build.ninja" ]] || cmake -S . -B "$from" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$from" -j "$(nproc)" --target mkd mkd-model mkd-teacher mkd-student mkd-coordinator mkd-health
  mkdir -p build/docker-bin
  for b in mkd mkd-model mkd-teacher mkd-student mkd-coordinator mkd-health; do
    strip -o "build/docker-bin/$b" "$from/bin/$b"
  done
  args+=(--build-arg PREBUILT=1)
fi
start=$(date +%s)
docker build -q "${args[@]}" --target coordinator -t maskedkd-coordinator:latest . >/dev/null
docker build -q "${args[@]}" -t maskedkd:latest . >/dev/null
docker build -q --network host --build-arg "BASE=$base" -f docker/prometheus.Dockerfile \
  -t maskedkd-prometheus:latest docker >/dev/null
rm -rf build/docker-bin
echo "docker_images: built in $(($(date +%s) - start)) s"
for image in maskedkd:latest maskedkd-coordinator:latest maskedkd-prometheus:latest; do
  printf '  %-30s %s\n' "$image" "$(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec --format='%.1f')"
done
