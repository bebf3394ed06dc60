#!/usr/bin/env bash
# The fidelity study on one GPU machine, in one go (not run by CI; see
# bench/fidelity.md): builds mkd and mkd-student against PyTorch's CUDA
# LibTorch (scripts/gpu_check.sh build), then
#   1. trains the teachers at once on the GPU: 49 tokens (4x4 patches on
#      28x28) with token dropping 25-100% (configs/fidelity/fmnist49_teacher.yaml,
#      the chosen recipe), 50-100%, none, and random erasing instead; and
#      196 tokens (56x56) with token dropping 50-100%;
#   2. runs bench/reproduce_fmnist.sh for the 196-token and the 49-token
#      students at once, several runs sharing the GPU, seed-major, until
#      the deadline.
# Everything lands in runs/fidelity_gpu/out (teachers' weights and logs,
# each table's results.tsv/table.md/run logs), so a run cut short still
# reports what finished; where $OUT is set (the device tool, which returns
# at most 8 files), that folder is also packed into $OUT/fidelity_gpu.tgz.
# Needs .cache/devroot.tar.xz (scripts/gpu_devroot.sh) and Fashion-MNIST's
# four .gz files in .cache/fashion-mnist (the GPU image has no Debian datasets); both are made here by `bench/fidelity_gpu.sh pack`.
# Env: BUDGET_S (default 540): seconds from start to the last result.
#      REPRO49_TEACHER (default t49_drop25): the 49-token table's teacher
#      (the table in bench/fidelity.md was made with t49_drop50, then the
#      default, before the study chose 25-100%).
#      DEVICE (default cuda), MKD_STUDENT (a built binary: skips the build),
#      SETS (more --set overrides for every run; a smoke test on a CPU:
#      DEVICE=cpu MKD_STUDENT=build/bin/mkd-student SETS="run.max_steps=3 data.limit_eval=256").
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ ${1:-} == pack ]]; then  # On the build machine: what the GPU machine needs.
  [[ -f .cache/devroot.tar.xz ]] || bash scripts/gpu_devroot.sh
  mkdir -p .cache/fashion-mnist
  cp /usr/share/datasets/fashion-mnist/*.gz .cache/fashion-mnist/
  du -sh .cache/devroot.tar.xz .cache/fashion-mnist
  exit 0
fi

out=runs/fidelity_gpu/out
rm -rf "$out"
mkdir -p "$out/teachers"
exec > >(tee -a "$out/fidelity_gpu.log") 2>&1
pack() { [[ -n ${OUT:-} ]] && tar -czf "$OUT/fidelity_gpu.tgz" -C runs/fidelity_gpu out; }
deadline=$((SECONDS + ${BUDGET_S:-540}))
stamp() { echo "== $(date +%T) (+${SECONDS}s) $*"; }
data=$PWD/.cache/fashion-mnist
[[ -f $data/train-images-idx3-ubyte.gz ]] || { echo "no $data: run bench/fidelity_gpu.sh pack first"; exit 1; }

left() { local s=$((deadline - SECONDS)); echo $((s > 1 ? s : 1)); }
device=${DEVICE:-cuda}
if [[ -n ${MKD_STUDENT:-} ]]; then
  student=$(realpath "$MKD_STUDENT")
else
  GPU_TARGETS="mkd mkd-student" OUT="$out" bash scripts/gpu_check.sh build || exit 1
  student=$PWD/build-gpu/bin/mkd-student
fi
[[ -d .cache/devroot ]] &&
  export LD_LIBRARY_PATH=$PWD/.cache/devroot/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# How busy the GPU is while the runs share it (every 30 s).
if command -v nvidia-smi >/dev/null; then
  while sleep 30; do
    echo "gpu: $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader) at +${SECONDS}s"
  done &
  sampler=$!
  trap 'kill $sampler 2>/dev/null; pack' EXIT
else
  trap pack EXIT
fi
sets="run.device=$device data.dir=$data data.workers=2 ${SETS:-}"
on_gpu=()
for s in $sets; do on_gpu+=(--set "$s"); done

# 1. Teachers, all at once; each gets until 55% of the time left, then its
# last finished epoch is used (and the log says so).
stamp teachers
teacher_limit=$(($(left) * 55 / 100 + 1))
train_teacher() {  # name config overrides...
  local name=$1 config=$2
  shift 2
  timeout "$teacher_limit" "$student" train --config "$config" "${on_gpu[@]}" --set run.threads=3 \
    --set run.out_dir="runs/fidelity_gpu/$name" "$@" >"$out/teachers/$name.log" 2>&1
  local rc=$? ckpt="runs/fidelity_gpu/$name/checkpoints"
  [[ -f $ckpt/latest ]] || { echo "$name: no checkpoint (exit $rc)"; return 1; }
  cp "$(printf '%s/step_%08d.model.safetensors' "$ckpt" "$(cat "$ckpt/latest")")" "$out/teachers/$name.safetensors"
  echo "$name: exit $rc, step $(cat "$ckpt/latest"), $(grep '^summary:' "$out/teachers/$name.log" || echo 'cut short: last epoch kept')"
}
t49=configs/fidelity/fmnist49_teacher.yaml
# `wait` names its jobs: a bare one would also wait for the tee above.
pids=()
train_teacher t49_drop25 "$t49" & pids+=($!)
train_teacher t49_drop50 "$t49" --set data.token_keep_min=0.5 & pids+=($!)
train_teacher t49_plain "$t49" --set data.token_keep_min=1 & pids+=($!)
train_teacher t49_erase "$t49" --set data.token_keep_min=1 --set data.random_erasing=0.25 & pids+=($!)
train_teacher t196_drop50 configs/fidelity/fmnist196_teacher.yaml & pids+=($!)
wait "${pids[@]}"

# 2. Both reproductions at once until the deadline.
stamp reproductions
repro() {  # tokens jobs teacher
  [[ -f $out/teachers/$3.safetensors ]] || { echo "no teacher $3"; return 1; }
  # The run directories (checkpoints) stay out of $out; their logs go in.
  OUT="runs/fidelity_gpu/repro$1" JOBS=$2 MKD_STUDENT=$student CONFIG=configs/fidelity/fmnist$1_student.yaml \
    TEACHER="$out/teachers/$3.safetensors" \
    SETS="$sets run.threads=1 run.log_every_steps=500" timeout "$(left)" bash bench/reproduce_fmnist.sh >"$out/repro$1.log" 2>&1
  echo "repro$1: exit $? ($(wc -l <"runs/fidelity_gpu/repro$1/results.tsv") runs finished)"
  mkdir -p "$out/repro$1"
  echo "$3" >"$out/repro$1/teacher.txt"
  cp "runs/fidelity_gpu/repro$1/results.tsv" "$out/repro$1/"
  for d in "runs/fidelity_gpu/repro$1"/*/; do cp "$d/log.txt" "$out/repro$1/$(basename "$d").log" 2>/dev/null; done
}
repro 196 4 t196_drop50 & pids=($!)
repro 49 4 "${REPRO49_TEACHER:-t49_drop25}" & pids+=($!)
wait "${pids[@]}"
py=/usr/bin/python3; [[ -x $py ]] || py=python3
for t in 196 49; do
  stamp "table, $t tokens"
  [[ -s $out/repro$t/results.tsv ]] && "$py" bench/repro_table.py "$out/repro$t" \
    "configs/fidelity/fmnist${t}_student.yaml" "$(cat "$out/repro$t/teacher.txt")"
done
stamp done
