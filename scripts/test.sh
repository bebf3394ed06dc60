#!/usr/bin/env bash
# Installs what is missing, builds everything and runs the whole test suite
# through ctest. Usage: scripts/test.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/check_format.sh  # Seconds, and before the build: drift fails fast.
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
jobs="${MKD_JOBS:-$(nproc)}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMKD_BUILD_TESTS=ON
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs" "$@"
