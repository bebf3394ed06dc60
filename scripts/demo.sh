#!/usr/bin/env bash
# The MaskedKD selection step end to end on the small golden models:
#   1. the student (a DeiT-style ViT) runs on full images and yields its
#      last-layer CLS saliency;
#   2. `mkd mask` keeps the top 50% of the teacher's patches by that saliency;
#   3. the teacher (a DeiT-III-style ViT) runs on the kept patches only, and
#      on full images for comparison.
# Issue "Training" replaces this with Fashion-MNIST training + distillation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target mkd -j "$(nproc)"

mkd=build/bin/mkd
golden=tests/golden
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== student: full forward + CLS saliency"
$mkd predict --model $golden/deit.yaml --weights $golden/deit.safetensors \
  --images $golden/images.npy --out "$work/student.npy" --saliency-out "$work/saliency.npy"
echo "== select: keep 50% of the teacher's patches"
$mkd mask --saliency "$work/saliency.npy" --teacher $golden/deit3.yaml --keep-ratio 0.5 \
  --out "$work/kept.npy"
echo "== teacher: kept tokens only, and full for comparison"
$mkd predict --model $golden/deit3.yaml --weights $golden/deit3.safetensors \
  --images $golden/images.npy --keep "$work/kept.npy" --out "$work/teacher_masked.npy"
$mkd predict --model $golden/deit3.yaml --weights $golden/deit3.safetensors \
  --images $golden/images.npy --out "$work/teacher_full.npy"
echo "== what the same selection saves on a real-size teacher (DeiT-S, 224 px)"
$mkd mask --saliency "$work/saliency.npy" --teacher deit_small_patch16_224 --keep-ratio 0.5 \
  --out "$work/kept_deit_s.npy"
ls -l "$work"
echo "demo: ok"
