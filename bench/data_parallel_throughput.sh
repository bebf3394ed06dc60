#!/usr/bin/env bash
# Training throughput of one job as 1 rank vs 2 ranks (processes over Gloo
# on loopback) on this machine, side by side: the same ViT, the same
# global batch (1 x 2b vs 2 x b), the same number of steps, and the same
# cores (1 rank gets all of them; 2 ranks get half each).
#   bench/data_parallel_throughput.sh [BIN_DIR] [STEPS]
# BIN_DIR defaults to build/bin (the plain, optimised build).
set -euo pipefail
bin=${1:-build/bin}
steps=${2:-40}
cores=$(nproc)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/student.yaml" <<YAML
mode: train
seed: 1
model: {img_size: 28, patch_size: 4, in_chans: 1, embed_dim: 192, depth: 6, num_heads: 3,
        num_classes: 10, mean: [0.286], std: [0.353]}
data: {batch_size: 64, limit_train: 20480, limit_eval: 64, workers: 1}
optim: {epochs: 1, lr: 0.0005}
run: {log_every_steps: 10, eval_every_epochs: 0, max_steps: $steps}
YAML
port=$((29700 + RANDOM % 200))
# The img/s of the last logged window (the first includes warm-up).
last_rate() { grep -o 'img/s [0-9.]*' "$1" | tail -n 1 | cut -d' ' -f2; }

"$bin/mkd-student" train --config "$dir/student.yaml" --set run.out_dir="$dir/one" \
  --set run.threads="$cores" > "$dir/one.log"
one=$(last_rate "$dir/one.log")
# The same single rank on half the cores: what one rank's threads add.
"$bin/mkd-student" train --config "$dir/student.yaml" --set run.out_dir="$dir/one_half" \
  --set run.threads="$(( cores / 2 > 0 ? cores / 2 : 1 ))" > "$dir/one_half.log"
one_half=$(last_rate "$dir/one_half.log")

half=$(( cores / 2 > 0 ? cores / 2 : 1 ))
for r in 1 0; do
  "$bin/mkd-student" train --config "$dir/student.yaml" --set run.out_dir="$dir/two" \
    --set data.batch_size=32 --set run.threads="$half" --set dist.world_size=2 \
    --set dist.rank=$r --set dist.master_port=$port > "$dir/two.$r.log" &
done
wait
two=$(last_rate "$dir/two.0.log")
echo "ViT 6x192 on 28x28 (49 tokens), global batch 64, $steps steps, $cores cores:"
echo "  1 rank  x 64, $cores threads:      $one img/s"
echo "  1 rank  x 64, $half thread(s):      $one_half img/s"
echo "  2 ranks x 32, $half thread(s) each: $two img/s (summed over ranks)"
awk -v a="$one" -v b="$two" 'BEGIN { printf "  2 ranks / 1 rank: %.2f\n", b / a }'
