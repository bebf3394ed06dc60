#!/usr/bin/env bash
# The README's main command: MaskedKD on real data, end to end, on one machine.
#   1. train a ViT teacher on Fashion-MNIST (Debian's dataset-fashion-mnist),
#      or reuse the one a previous run left in the cache folder;
#   2. distill a smaller ViT student from it with MaskedKD, the teacher
#      seeing only the 50% of patches the student's CLS attends to (the
#      teacher runs in the student's process: no network);
#   3. print teacher accuracy, student accuracy and the teacher FLOPs spent
#      versus vanilla KD.
# Cache: $MKD_CACHE (default ~/.cache/maskedkd) keeps the trained teacher,
# keyed by a hash of its config; delete it to retrain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target mkd-student mkd -j "$(nproc)"

student_bin=build/bin/mkd-student
cache="${MKD_CACHE:-$HOME/.cache/maskedkd}"
key=$(cat configs/fmnist_teacher.yaml configs/fmnist_teacher_model.yaml | sha256sum | cut -c1-12)
teacher="$cache/fmnist_teacher_$key.safetensors"
mkdir -p "$cache" runs
start=$(date +%s)

if [[ -f "$teacher" ]]; then
  echo "== teacher: reusing $teacher"
else
  echo "== teacher: training (configs/fmnist_teacher.yaml)"
  rm -rf runs/fmnist_teacher
  $student_bin train --config configs/fmnist_teacher.yaml | tee runs/fmnist_teacher.log
  step=$(cat runs/fmnist_teacher/checkpoints/latest)
  cp "$(printf 'runs/fmnist_teacher/checkpoints/step_%08d.model.safetensors' "$step")" "$teacher.tmp"
  mv "$teacher.tmp" "$teacher"
fi
teacher_eval=$($student_bin eval --config configs/fmnist_teacher.yaml --checkpoint "$teacher")
echo "$teacher_eval"

echo "== student: MaskedKD, teacher keeps 50% of its patches (configs/fmnist_student.yaml)"
rm -rf runs/fmnist_student
$student_bin train --config configs/fmnist_student.yaml \
  --set distill.teacher_weights="$teacher" | tee runs/fmnist_student.log
summary=$(grep '^summary:' runs/fmnist_student.log)

teacher_top1=$(sed -n 's/.*top1 \([0-9.]*\)%.*/\1/p' <<<"$teacher_eval")
student_top1=$(sed -n 's/.*top1 \([0-9.]*\)%.*/\1/p' <<<"$summary")
flops=$(sed -n 's/.*teacher GFLOPs \([0-9.]*\) vs \([0-9.]*\) for vanilla KD (\([0-9.]*x\) fewer).*/\1 \2 \3/p' <<<"$summary")
read -r spent full fewer <<<"$flops"
echo
echo "| what                                   | value |"
echo "|----------------------------------------|-------|"
echo "| teacher top-1 (Fashion-MNIST test)     | ${teacher_top1}% |"
echo "| student top-1, MaskedKD keep 50%       | ${student_top1}% |"
echo "| teacher GFLOPs spent (MaskedKD)        | ${spent} |"
echo "| teacher GFLOPs vanilla KD would spend  | ${full} |"
echo "| saving                                 | ${fewer} |"
echo "| wall time                              | $(( $(date +%s) - start )) s |"
echo
echo "curves: /usr/bin/python3 scripts/plot_metrics.py runs/fmnist_student/metrics.jsonl"
