#!/usr/bin/env bash
# The GPU check, in one go on a GPU machine (see README "On a GPU"): builds
# the whole service (mkd-teacher, mkd-student, mkd) against PyTorch's
# bundled LibTorch and the Debian libraries packed by scripts/gpu_devroot.sh,
# runs the benchmarks, then the CUDA tests (a run cut short keeps the
# figures):
#   1. train_throughput_bench, the paper's Table 2 setting: DeiT-S student <-
#      DeiT-B teacher at 224, bf16, batch 256: no KD, vanilla KD, MaskedKD
#      50% and 25%, in-process m = 4; then MaskedKD 50% with the teacher in
#      a separate mkd-teacher process on the same GPU over shared memory
#      (m = 1, 4, 8) and over gRPC bytes (m = 1), and with an echo teacher
#      (m = 1, 4: the data path alone, vs no KD); the per micro-batch stage
#      table (CUDA events) and the pool economics;
#   2. teacher_server_bench: mkd-teacher on CUDA vs its bare engine at keep
#      100/50/25%, and its peak GPU memory;
#   3. data_plane_bench: shared memory vs gRPC bytes to an echo teacher;
#   4. train_throughput_bench with a DeiT-III Huge/14 teacher (where the
#      teacher dominates the step, as in the paper's large-teacher rows;
#      SKIP_HUGE=1 leaves it out).
# Everything it prints also goes to $OUT/gpu_check.log (or build-gpu/).
# Meant to finish in under 8 minutes on an H100/H200 with 16 cores.
#
# Usage (on the GPU machine, in the repository root, with
# .cache/devroot.tar.xz carried over): bash scripts/gpu_check.sh [build|test|bench]...
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build-gpu}
mkdir -p "$out"
exec > >(tee -a "$out/gpu_check.log") 2>&1
steps=("$@")
((${#steps[@]})) || steps=(build test bench)
want() { [[ " ${steps[*]} " == *" $1 "* ]]; }
stamp() { echo "== $(date +%T) $*"; }

devroot=$PWD/.cache/devroot
if [[ ! -d $devroot ]]; then
  [[ -f .cache/devroot.tar.xz ]] || { echo "run scripts/gpu_devroot.sh first (on the build machine)"; exit 1; }
  tar -C .cache -xJf .cache/devroot.tar.xz
fi
export LD_LIBRARY_PATH=$devroot/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export MKD_BIN_DIR=$PWD/build-gpu/bin
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
torch_cmake=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

if want build; then
  stamp build
  # C++20: newer LibTorch headers may demand it, and the code builds as 17
  # (Debian's LibTorch, CI) and as 20 (checked there with the devroot).
  echo "$(c++ --version | head -n 1); $(cmake --version | head -n 1); $(nproc) cores"
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMKD_DEVROOT="$devroot" \
    -DCMAKE_PREFIX_PATH="$torch_cmake" -DCMAKE_CXX_STANDARD=20 -DMKD_BUILD_TESTS=ON \
    >build-gpu.log 2>&1 || { tail -40 build-gpu.log; exit 1; }
  grep "maskedkd:" build-gpu.log
  # GPU_TARGETS: build only these (bench/fidelity_gpu.sh needs two).
  read -r -a targets <<<"${GPU_TARGETS:-mkd mkd-teacher mkd-student cuda_test train_throughput_bench teacher_server_bench masked_forward_bench data_plane_bench}"
  # -k 0: a target that fails to compile does not stop the others; the
  # steps below run whatever built and count what did not.
  if ! cmake --build build-gpu -j "$(nproc)" --target "${targets[@]}" -- -k 0 >>build-gpu.log 2>&1; then
    grep -E 'error|Error' -B2 -A6 build-gpu.log | head -80
    cp build-gpu.log "$out/" 2>/dev/null
    build_failed=1
  fi
  # Protobuf twice in one process is only safe if LibTorch hides its copy.
  lib=$(dirname "$torch_cmake")/../lib/libtorch_cpu.so
  echo "protobuf symbols exported by libtorch_cpu: $(nm -D --defined-only "$lib" 2>/dev/null | grep -c 'google8protobuf' || true)"
  stamp built
fi

status=${build_failed:-0}
# Runs a built binary under a time limit; a missing one counts as a failure.
run() {
  local limit=$1 bin=$2
  shift 2
  [[ -x $bin ]] || { echo "$bin did not build: skipped"; status=1; return 1; }
  timeout "$limit" "$bin" "$@" || { echo "$bin: exit code $?"; status=1; return 1; }
}

if want bench; then
  stamp bench: DeiT-S student, DeiT-B teacher
  run 240 build-gpu/bench/train_throughput_bench --device cuda --precision bf16 --batch 256 \
    --student deit_small_patch16_224 --teacher deit_base_patch16_224 --remote process \
    --rounds "${ROUNDS:-10}"
  stamp bench: teacher serving
  run 120 build-gpu/bench/teacher_server_bench --device cuda --dtype bf16 \
    --teacher deit_base_patch16_224 --images 64 --count 16 --rounds "${ROUNDS:-10}"
  stamp bench: data planes
  run 60 build-gpu/bench/data_plane_bench --bin-dir build-gpu/bin --rounds 5
  if [[ -z ${SKIP_HUGE:-} ]]; then
    stamp bench: DeiT-S student, DeiT-III Huge/14 teacher
    run 150 build-gpu/bench/train_throughput_bench --device cuda --precision bf16 --batch 128 \
      --student deit_small_patch16_224 --teacher deit3_huge_patch14_224 --remote none --rounds 5
  fi
fi

if want test; then
  stamp test
  # One process per test: a crash loses one test, not the rest, and gets
  # a backtrace (cuda-gdb also debugs host code; there is no gdb).
  if [[ -x build-gpu/tests/cuda_test ]]; then
    for t in $(build-gpu/tests/cuda_test --gtest_list_tests | awk '/^[^ ]/{s=$1} /^  /{print s $1}'); do
      timeout 120 build-gpu/tests/cuda_test --gtest_filter="$t" >"$out/test.log" 2>&1
      rc=$?
      grep -E '^\[ +(OK|FAILED|SKIPPED) +\]|Failure|Expected|actual|Which is|: loss|diff' "$out/test.log"
      if ((rc != 0)); then
        status=1
        echo "$t: exit code $rc"
        if ((rc >= 128)) && command -v cuda-gdb >/dev/null; then
          timeout 120 cuda-gdb -q -batch -ex run -ex "bt 30" --args build-gpu/tests/cuda_test \
            --gtest_filter="$t" 2>&1 | grep -E '^#|signal' | head -40
        fi
      fi
    done
  else
    echo "build-gpu/tests/cuda_test did not build: skipped"
    status=1
  fi
  # Data parallel: a one-rank NCCL job trains (one GPU cannot host two
  # NCCL ranks; an explicit dist.backend makes even one rank build its group).
  # Synthetic images: a GPU machine has no Debian Fashion-MNIST.
  run 180 build-gpu/bin/mkd-student train --config configs/fmnist_teacher.yaml \
    --set data.kind=synthetic --set data.dir=1x28x28 --set run.device=cuda --set dist.world_size=1 --set dist.backend=nccl \
    --set dist.master_port=29731 --set run.max_steps=20 --set run.log_every_steps=10 \
    --set run.out_dir=/tmp/mkd_nccl_one_rank >"$out/nccl.log" 2>&1
  grep -E 'joined|step 20/|error' "$out/nccl.log"
  grep -q 'step 20/' "$out/nccl.log" || status=1
  # The service binaries start and answer --help on this machine.
  for b in mkd mkd-teacher mkd-student; do run 30 build-gpu/bin/$b --help >/dev/null; done
fi
stamp done, status $status
exit $status
