#!/usr/bin/env bash
# Builds maskedkd's images from docker/Dockerfile (classic builder, host
# network) and prints their tags and sizes:
#   maskedkd              mkd-teacher, mkd-student, mkd, on LibTorch
#   maskedkd-coordinator  mkd-coordinator and mkd-health, no LibTorch
#   maskedkd-prometheus   Debian's Prometheus (the local cluster's)
# Each is tagged `latest` and with its version: VERSION's, then -g and the
# commit (-dirty with uncommitted changes), e.g. 0.5.0-g1a2b3c4d5e6f, and
# carries the OCI labels (title, version, revision, created).
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
version=$(head -n 1 VERSION)
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
tag="$version-g$revision"
dirty=""
if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then dirty=-dirty; fi
tag+=$dirty
# What the binaries built in the image report as their revision.
args+=(--build-arg "MKD_REVISION=$revision$dirty")
labels=(--label "org.opencontainers.image.version=$version"
  --label "org.opencontainers.image.revision=$revision"
  --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  --label "org.opencontainers.image.vendor=maskedkd")
# name, Dockerfile target ("" for the last stage), title
build() {
  local name=$1 target=$2 title=$3
  docker build -q "${args[@]}" ${target:+--target "$target"} "${labels[@]}" \
    --label "org.opencontainers.image.title=$title" -t "$name:latest" -t "$name:$tag" . >/dev/null
}
start=$(date +%s)
build maskedkd-coordinator coordinator "maskedkd coordinator"
build maskedkd "" "maskedkd teacher and student"
docker build -q --network host --build-arg "BASE=$base" -f docker/prometheus.Dockerfile "${labels[@]}" \
  --label "org.opencontainers.image.title=maskedkd prometheus" \
  -t maskedkd-prometheus:latest -t "maskedkd-prometheus:$tag" docker >/dev/null
rm -rf build/docker-bin
echo "docker_images: built in $(($(date +%s) - start)) s, tagged latest and $tag"
for image in maskedkd maskedkd-coordinator maskedkd-prometheus; do
  printf '  %-48s %s\n' "$image:$tag" "$(docker image inspect -f '{{.Size}}' "$image:$tag" | numfmt --to=iec --format='%.1f')"
done
