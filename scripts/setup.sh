#!/usr/bin/env bash
# Installs, from Debian's packages, everything maskedkd needs to build, test and
# run its demo. Idempotent: packages already present are not touched, so a
# second run costs one dpkg query. --reference adds Debian's PyTorch and
# torchvision (to regenerate golden files); --plots is kept for old
# callers (matplotlib is in the base set: the tests run the plot script).
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread
  libabsl-dev libyaml-cpp-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  zlib1g-dev libturbojpeg0-dev libpng-dev
  dataset-fashion-mnist
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  prometheus-cpp-dev libcpp-httplib-dev
  prometheus python3-grpcio python3-protobuf python3-numpy python3-matplotlib
)
for arg in "$@"; do
  case "$arg" in
    --reference) packages+=(python3-torch python3-torchvision) ;;
    --plots) ;;  # matplotlib is in the base set now (tests run the plot script).
    *) echo "setup: unknown option $arg (expected --reference or --plots)" >&2; exit 2 ;;
  esac
done

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
echo "setup: ok"
