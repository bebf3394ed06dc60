#!/usr/bin/env bash
# The sanitizer builds (clang) and their test runs; scripts/test.sh runs both.
#   scripts/sanitize.sh asan [ctest args]
#       ASan + UBSan build of everything, the libFuzzer targets included
#       (build-asan/), then the whole ctest suite on it: every test, the
#       processes the tests start, the containers of cluster_test, and a
#       short run of each fuzzer (label "fuzz").
#   scripts/sanitize.sh tsan [ctest args]
#       TSan build (build-tsan/) of the concurrent parts: the thread
#       helper and the log, the teacher server, the remote teacher client
#       and its data planes, and the coordinator, and their tests.
# Only our code is instrumented: Debian's LibTorch, gRPC and protobuf are
# not. scripts/sanitizers/*.supp name what is theirs, each with the reason.
# Every build is also compiled with clang's -Wthread-safety as an error.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
shift || true
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
jobs="${MKD_JOBS:-$(nproc)}"
supp="$PWD/scripts/sanitizers"
# -O1 keeps the stacks readable and the compile short; line tables are
# all the reports need.
configure=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only"
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
  -DMKD_BUILD_TESTS=ON -DMKD_BUILD_BENCH=OFF)
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
case "$mode" in
  asan)
    cmake -S . -B build-asan "${configure[@]}" -DMKD_SANITIZE=address,undefined -DMKD_BUILD_FUZZERS=ON
    cmake --build build-asan -j "$jobs"
    # Leak checking is on: a test process that leaks fails.
    export ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1"
    export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
    ctest --test-dir build-asan --output-on-failure -j "$jobs" "$@"
    ;;
  tsan)
    tests=(thread_test log_test pool_auth_test heartbeat_loop_test retry_test
      batch_queue_test validation_test server_config_test result_cache_test stream_limits_test
      shared_region_test server_test server_lifecycle_test server_limits_test server_auth_test
      remote_teacher_test planner_test assignment_test pool_state_test config_test service_test
      auth_test data_plane_test)
    # gRPC's and protobuf's inline code is left uninstrumented (the ignore
    # list says why); ignore_noninstrumented_modules does the same for
    # libc calls made from inside Debian's libraries.
    # ccache (4.7) does not hash the ignore list's contents (checked: an
    # edited list reused stale objects), so it is named as an extra file to
    # hash.
    export CCACHE_EXTRAFILES="$supp/tsan_ignorelist.txt"
    cmake -S . -B build-tsan "${configure[@]}" -DMKD_SANITIZE=thread \
      "-DCMAKE_CXX_FLAGS=-fsanitize-ignorelist=$supp/tsan_ignorelist.txt"
    cmake --build build-tsan -j "$jobs" --target "${tests[@]}"
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$supp/tsan.supp"
    regex="^($(IFS='|'; echo "${tests[*]}"))\$"
    ctest --test-dir build-tsan --output-on-failure -j "$jobs" -R "$regex" "$@"
    ;;
  *)
    echo "usage: scripts/sanitize.sh asan|tsan [ctest args]" >&2
    exit 2
    ;;
esac
