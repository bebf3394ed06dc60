#!/usr/bin/env bash
# Installs, from Debian's packages, everything maskedkd needs to build, test and
# run its demo. Idempotent: packages already present are not touched, so a
# second run costs one dpkg query. --reference adds Debian's PyTorch and
# torchvision (to regenerate golden files); --plots is kept for old
# callers (matplotlib is in the base set: the tests run the plot script);
# --build-only installs what compiling the binaries needs and nothing else
# (docker/Dockerfile's build stage: no test tools, no Docker in Docker).
set -euo pipefail

# Compiling mkd, mkd-teacher, mkd-student, mkd-coordinator, mkd-health.
build_packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libgloo-dev libopenblas0-pthread
  libabsl-dev libyaml-cpp-dev nlohmann-json3-dev
  zlib1g-dev libturbojpeg0-dev libpng-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libssl-dev
  prometheus-cpp-dev libcpp-httplib-dev libxxhash-dev libgoogle-glog-dev
)
# The tests, benchmarks and demo: GoogleTest, the real dataset, promtool
# and Prometheus, Python clients; Docker, compose and debootstrap for the
# images and the cluster test; PyYAML for the manifest checker;
# clang-format for scripts/check_format.sh; clang, its sanitizer and
# libFuzzer runtimes and llvm-symbolizer for scripts/sanitize.sh; Node.js
# and npm for the manifests' schema check (deploy/k8s/schema).
tool_packages=(
  libgtest-dev libgmock-dev libbenchmark-dev
  dataset-fashion-mnist
  prometheus python3-grpcio python3-protobuf python3-numpy python3-matplotlib python3-yaml
  docker.io docker-compose debootstrap curl clang-format
  clang libclang-rt-14-dev llvm-14
)
packages=("${build_packages[@]}" "${tool_packages[@]}")
for arg in "$@"; do
  case "$arg" in
    --reference) packages+=(python3-torch python3-torchvision) ;;
    --plots) ;;  # matplotlib is in the base set now (tests run the plot script).
    --build-only) packages=("${build_packages[@]}") ;;
    *) echo "setup: unknown option $arg (expected --reference, --plots or --build-only)" >&2; exit 2 ;;
  esac
done
# kubectl renders the Kubernetes manifests (kubectl kustomize): Debian's
# kubernetes-client, unless a kubectl is already installed.
if [[ " ${packages[*]} " == *" docker.io "* ]] && ! command -v kubectl >/dev/null; then
  packages+=(kubernetes-client)
fi
# Node.js and npm (Debian's), unless a node and npm are already installed
# (another vendor's nodejs conflicts with Debian's npm).
if [[ " ${packages[*]} " == *" docker.io "* ]] && ! { command -v node && command -v npm; } >/dev/null; then
  packages+=(nodejs npm)
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  ${sudo_cmd[@]+"${sudo_cmd[@]}"} apt-get update -qq
  ${sudo_cmd[@]+"${sudo_cmd[@]}"} apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's reference BLAS makes LibTorch 17-47x slower; make sure OpenBLAS
# is the one the alternatives system hands out.
if ! update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null \
    | grep -q '^Value: .*openblas'; then
  target=$(update-alternatives --list libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep openblas | head -n 1 || true)
  if [[ -n "$target" ]]; then
    ${sudo_cmd[@]+"${sudo_cmd[@]}"} update-alternatives --set libblas.so.3-x86_64-linux-gnu "$target"
  fi
fi
# The Kubernetes, prometheus-operator and cert-manager schemas, at the
# versions deploy/k8s/schema/package-lock.json pins (from npm's registry;
# again whenever the lock is newer than what npm installed).
schema_dir="$(dirname "$0")/../deploy/k8s/schema"
installed="$schema_dir/node_modules/.package-lock.json"
if [[ " ${packages[*]} " == *" docker.io "* ]] &&
    [[ ! -f $installed || $schema_dir/package-lock.json -nt $installed ]]; then
  echo "setup: installing the manifest schemas (npm ci in deploy/k8s/schema)"
  (cd "$schema_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: ok"
