#!/usr/bin/env bash
# Reproduces MaskedKD's main comparison on Fashion-MNIST (not run by CI):
# one student config trained with no KD, logit KD (teacher sees every
# patch), MaskedKD keeping 75/50/25% by student attention, and the
# random-50% and bottom-k-50% ablations, over several seeds. Writes, under OUT:
#   results.tsv  variant, seed, top-1, teacher GFLOPs, wall seconds (one line per run)
#   table.md     mean ± std top-1 and teacher GFLOPs per variant
#   plot.png     accuracy vs teacher FLOPs (if matplotlib is there)
# Env:
#   CONFIG   student config (default: the demo's, configs/fmnist_student.yaml,
#            16 tokens; configs/fidelity/fmnist49_student.yaml is 49 tokens)
#   TEACHER  teacher weights (default: the demo's committed teacher)
#   OUT      output folder (default runs/repro)
#   SEEDS    (default "0 1 2"); EPOCHS (default: the config's)
#   JOBS     runs at once (default 1; on a GPU several small runs share it)
#   SETS     extra --set overrides for every run, e.g. "run.device=cuda run.threads=2"
#   VARIANTS only the variants whose name contains one of these comma-separated
#            parts (default all), e.g. "logit,random" or "MaskedKD keep 50%"
#   MKD_STUDENT  the binary (default build/bin/mkd-student)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${SEEDS:-"0 1 2"}
bin=$(realpath "${MKD_STUDENT:-build/bin/mkd-student}")
config=${CONFIG:-configs/fmnist_student.yaml}
teacher=${TEACHER:-assets/fmnist_teacher.safetensors}
out=${OUT:-runs/repro}
parallel=${JOBS:-1}
mkdir -p "$out"
for f in "$config" "$teacher"; do [[ -f $f ]] || { echo "reproduce_fmnist.sh: missing $f" >&2; exit 1; }; done

common=(--config "$config" --set distill.teacher_weights="$teacher" --set run.eval_every_epochs=0)
[[ -n "${EPOCHS:-}" ]] && common+=(--set "optim.epochs=$EPOCHS")
for s in ${SETS:-}; do common+=(--set "$s"); done

# name | overrides
variants=(
  "no KD|--set mode=train"
  "logit KD (keep 100%)|--set distill.criterion=all --set distill.keep_ratio=1"
  "MaskedKD keep 75%|--set distill.criterion=student_topk --set distill.keep_ratio=0.75"
  "MaskedKD keep 50%|--set distill.criterion=student_topk --set distill.keep_ratio=0.5"
  "MaskedKD keep 25%|--set distill.criterion=student_topk --set distill.keep_ratio=0.25"
  "random 50%|--set distill.criterion=random --set distill.keep_ratio=0.5"
  "bottom-k 50%|--set distill.criterion=bottomk --set distill.keep_ratio=0.5"
)
wanted() {
  [[ -z "${VARIANTS:-}" ]] && return 0
  local w parts
  IFS=, read -r -a parts <<<"$VARIANTS"
  for w in "${parts[@]}"; do [[ -n $w && $1 == *"$w"* ]] && return 0; done
  return 1
}

# One run: its log beside its output; one results line appended (a line
# under PIPE_BUF is written whole, so parallel runs do not interleave).
run_one() {
  local name=$1 seed=$2 sets=$3
  local dir
  dir="$out/$(tr ' %()' '____' <<<"$name")_s$seed"
  rm -rf "$dir"
  mkdir -p "$dir"
  local started=$SECONDS
  # shellcheck disable=SC2086  # sets is a list of words
  if ! "$bin" train "${common[@]}" --set seed="$seed" --set run.out_dir="$dir" $sets >"$dir/log.txt" 2>&1; then
    echo "FAILED: $name seed $seed (log: $dir/log.txt)" >&2
    tail -5 "$dir/log.txt" >&2
    return 1
  fi
  local summary top1 gflops
  summary=$(grep '^summary:' "$dir/log.txt")
  top1=$(sed -n 's/.*top1 \([0-9.]*\)%.*/\1/p' <<<"$summary")
  gflops=$(sed -n 's/.*teacher GFLOPs \([0-9.]*\) vs.*/\1/p' <<<"$summary")
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$seed" "$top1" "${gflops:-0}" "$((SECONDS - started))" |
    tee -a "$out/results.tsv"
}

: >"$out/results.tsv"
failed=0
# Stopped (a deadline's timeout, Ctrl-C): stop this script's runs too, and
# only them.
# Each run is a subshell whose child is the trainer: stop both.
stop_runs() {
  local p
  for p in $(jobs -p); do
    pkill -TERM -P "$p" 2>/dev/null
    kill "$p" 2>/dev/null
  done
  exit 143
}
trap stop_runs TERM INT
# Seed-major order: with a deadline, every variant gets its first seed first.
for seed in $seeds; do
  for v in "${variants[@]}"; do
    name=${v%%|*}
    wanted "$name" || continue
    # `jobs` runs here, not in a $( ) subshell, which would not see these jobs.
    while jobs -rp >"$out/.running" && (($(wc -l <"$out/.running") >= parallel)); do
      wait -n || failed=1
    done
    run_one "$name" "$seed" "${v#*|}" &
  done
done
while jobs -rp >"$out/.running" && [[ -s $out/.running ]]; do wait -n || failed=1; done
rm -f "$out/.running"

py=/usr/bin/python3; [[ -x $py ]] || py=python3
"$py" bench/repro_table.py "$out" "${config}" "${teacher}"
exit "$failed"
