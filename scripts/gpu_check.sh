#!/usr/bin/env bash
# Runs on a GPU machine (see README "GPU check"): builds the Torch-only core
# (common/, cli/, masked_forward_bench) against PyTorch's bundled LibTorch
# and the Debian libraries packed by scripts/gpu_devroot.sh, then checks
# CUDA against CPU logits and times masked vs full forwards on the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
devroot=$PWD/.cache/devroot
[[ -d $devroot ]] || { echo "run scripts/gpu_devroot.sh first (on the build machine)"; exit 1; }
torch_cmake=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
export LD_LIBRARY_PATH=$devroot/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMKD_TORCH_ONLY=ON \
  -DCMAKE_PREFIX_PATH="$devroot;$devroot/share/cmake;$torch_cmake" >build-gpu.log 2>&1 \
  || { tail -40 build-gpu.log; exit 1; }
cmake --build build-gpu --target masked_forward_bench mkd -j "$(nproc)" >>build-gpu.log 2>&1 \
  || { grep -E 'error|Error' -A3 build-gpu.log | head -60; exit 1; }
bench=build-gpu/bench/masked_forward_bench
models=${MODELS:-deit_small_patch16_224,deit_base_patch16_224}
for dtype in ${DTYPES:-fp16 bf16 fp32}; do
  $bench --device cuda --dtype "$dtype" --models "$models" --batch "${BATCH:-256}" \
    --rounds "${ROUNDS:-10}"
done
