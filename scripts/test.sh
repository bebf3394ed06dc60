#!/usr/bin/env bash
# Installs what is missing, then builds and tests everything. CI runs this.
#   scripts/test.sh [ctest args]
#       the format check; the ASan + UBSan build of everything (clang, with
#       -Wthread-safety as an error and the libFuzzer targets) and the whole
#       ctest suite on it, short fuzz runs included; then the TSan build of
#       the concurrent parts and their tests (scripts/sanitize.sh says which).
#       The extra ctest args apply to the ASan run.
#   scripts/test.sh --plain [ctest args]
#       the plain build (build/, the system compiler, RelWithDebInfo: what
#       scripts/demo.sh and the benchmarks use) and the whole suite on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/check_format.sh  # Seconds, and before the build: drift fails fast.
bash scripts/check_cuda_compiles.sh  # The CUDA-only code (NCCL, data path), against CUDA headers.
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
jobs="${MKD_JOBS:-$(nproc)}"
if [[ "${1:-}" == --plain ]]; then
  shift
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMKD_BUILD_TESTS=ON
  cmake --build build -j "$jobs"
  ctest --test-dir build --output-on-failure -j "$jobs" "$@"
  exit
fi
start=$(date +%s)
bash scripts/sanitize.sh asan "$@"
echo "test: ASan + UBSan build and suite: $(($(date +%s) - start)) s"
start=$(date +%s)
bash scripts/sanitize.sh tsan
echo "test: TSan build and tests: $(($(date +%s) - start)) s"
