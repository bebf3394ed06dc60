#!/usr/bin/env bash
# Makes the local Debian 12 base image (default name maskedkd-base:bookworm)
# that docker/Dockerfile builds FROM where no registry is reachable: a
# debootstrap minbase of bookworm from this machine's own Debian mirror,
# with this machine's apt sources (bookworm, -updates, -security), so the
# images get the same package versions as the host build. ~1 minute; a
# no-op when the image exists (--force rebuilds it).
#   scripts/docker_base.sh [--force] [image-name]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/docker_env.sh
force=0
name=maskedkd-base:bookworm
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -*) echo "usage: scripts/docker_base.sh [--force] [image-name]" >&2; exit 2 ;;
    *) name=$arg ;;
  esac
done
docker_env_start
if ((!force)) && docker image inspect "$name" >/dev/null 2>&1; then
  echo "docker_base: $name exists"
  exit 0
fi
sources=/etc/apt/sources.list.d/debian.sources
mirror=$(sed -n 's/^URIs: *//p' "$sources" | head -n 1)
[[ -n "$mirror" ]] || { echo "docker_base: no URIs: line in $sources" >&2; exit 1; }
rootfs=$(mktemp -d /tmp/mkd-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "docker_base: debootstrap bookworm from $mirror"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
  || { tail -n 30 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log" "$rootfs/etc/apt/sources.list"
cp "$sources" "$rootfs/etc/apt/sources.list.d/debian.sources"
# Keep images small: no docs, man pages or locales from later installs.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-maskedkd-nodoc" <<'CFG'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/locale/*
CFG
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import - "$name" >/dev/null
echo "docker_base: $name ($(docker image inspect -f '{{.Size}}' "$name" | numfmt --to=iec))"
