#!/usr/bin/env bash
# Compiles (without linking) the code that only a CUDA build compiles,
# against this machine's LibTorch headers (Debian's 1.13 ships the ATen
# CUDA and ProcessGroupNCCL headers) and the CUDA/NCCL headers in
# /usr/local/cuda:
#   - the data-parallel students' NCCL path (student_worker/data_parallel.cc
#     with MKD_TORCH_NCCL);
#   - the data path's CUDA code (MKD_TORCH_CUDA): the stage timer's events
#     and NVTX ranges (common/device_timer.cc), the side-stream copies to
#     pinned memory (common/device_to_host.cc), page-locking host memory
#     (common/device_memory.cc).
# Debian's LibTorch is CPU-only, so this is the check a CPU machine can
# make; building and running it against PyTorch's CUDA LibTorch needs a GPU
# session (scripts/gpu_check.sh).
# Exits 0 with a notice where there are no CUDA headers to compile against.
set -euo pipefail
cd "$(dirname "$0")/.."
cuda=${CUDA_HOME:-/usr/local/cuda}
if [[ ! -f $cuda/include/nccl.h || ! -f /usr/include/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp ]]; then
  echo "check_cuda_compiles: no NCCL or LibTorch NCCL headers here ($cuda); not checked"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Debian's libtorch-dev leaves out the header CMake generates for a CUDA
# build of c10; its one definition is all ProcessGroupNCCL.hpp needs.
mkdir -p "$tmp/c10/cuda/impl"
echo '#define C10_CUDA_BUILD_SHARED_LIBS' > "$tmp/c10/cuda/impl/cuda_cmake_macros.h"
flags=(-std=c++17 -fsyntax-only -DMKD_TORCH_CUDA=1 -I. -I"$tmp"
  -I/usr/include/torch/csrc/api/include -I"$cuda/include")
g++ "${flags[@]}" -DMKD_TORCH_NCCL=1 -DMKD_HAVE_GLOO=1 student_worker/data_parallel.cc
for f in common/device_timer.cc common/device_to_host.cc common/device_memory.cc; do
  g++ "${flags[@]}" "$f"
done
echo "check_cuda_compiles: data_parallel.cc (NCCL), device_timer.cc, device_to_host.cc, device_memory.cc compile" \
  "with CUDA ($cuda)"
