#!/usr/bin/env bash
# Compiles (without linking) the data-parallel students' NCCL path,
# student_worker/data_parallel.cc with MKD_TORCH_NCCL, against this
# machine's LibTorch headers (Debian's 1.13 ships ProcessGroupNCCL.hpp) and
# the CUDA/NCCL headers in /usr/local/cuda. Debian's LibTorch is CPU-only,
# so this is the check a CPU machine can make; building and running it
# against PyTorch's CUDA LibTorch needs a GPU session.
# Exits 0 with a notice where there are no CUDA headers to compile against.
set -euo pipefail
cd "$(dirname "$0")/.."
cuda=${CUDA_HOME:-/usr/local/cuda}
if [[ ! -f $cuda/include/nccl.h || ! -f /usr/include/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp ]]; then
  echo "check_nccl_compiles: no NCCL or LibTorch NCCL headers here ($cuda); not checked"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Debian's libtorch-dev leaves out the header CMake generates for a CUDA
# build of c10; its one definition is all ProcessGroupNCCL.hpp needs.
mkdir -p "$tmp/c10/cuda/impl"
echo '#define C10_CUDA_BUILD_SHARED_LIBS' > "$tmp/c10/cuda/impl/cuda_cmake_macros.h"
g++ -std=c++17 -fsyntax-only -DMKD_TORCH_NCCL=1 -DMKD_HAVE_GLOO=1 -I. -I"$tmp" \
  -I/usr/include/torch/csrc/api/include -I"$cuda/include" student_worker/data_parallel.cc
echo "check_nccl_compiles: student_worker/data_parallel.cc compiles with NCCL ($cuda)"
