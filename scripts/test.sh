#!/usr/bin/env bash
# Installs what is missing, then builds and tests everything. CI runs this.
#   scripts/test.sh [--tier unit|integration|all] [--plain] [ctest args]
#       --tier picks the tests by their ctest label (docs/development.md,
#       "Test tiers"): unit (one process each, no Docker, no GPU; a couple
#       of minutes), integration (real processes: the pool, the CLI,
#       deploy/), all (the default, and CI's: unit, integration, cluster
#       (Docker), gpu (skips without one), and the short fuzz runs).
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
tier=all
plain=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tier) tier="${2:-}"; shift 2 || { echo "test: --tier needs unit, integration or all" >&2; exit 2; } ;;
    --plain) plain=1; shift ;;
    *) break ;;
  esac
done
case "$tier" in
  unit | integration) label=(-L "^$tier\$") ;;
  all) label=() ;;
  *) echo "test: --tier: expected unit, integration or all, got '$tier'" >&2; exit 2 ;;
esac
bash scripts/setup.sh
bash scripts/check_format.sh  # Seconds, and before the build: drift fails fast.
bash scripts/check_cuda_compiles.sh  # The CUDA-only code (NCCL, data path), against CUDA headers.
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
jobs="${MKD_JOBS:-$(nproc)}"
if ((plain)); then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMKD_BUILD_TESTS=ON
  cmake --build build -j "$jobs"
  ctest --test-dir build --output-on-failure -j "$jobs" ${label[@]+"${label[@]}"} "$@"
  exit
fi
start=$(date +%s)
bash scripts/sanitize.sh asan ${label[@]+"${label[@]}"} "$@"
echo "test: ASan + UBSan build and suite ($tier): $(($(date +%s) - start)) s"
start=$(date +%s)
bash scripts/sanitize.sh tsan ${label[@]+"${label[@]}"}
echo "test: TSan build and tests ($tier): $(($(date +%s) - start)) s"
