#!/usr/bin/env bash
# Reproduces MaskedKD's main comparison on Fashion-MNIST (not run by CI):
# the demo student trained with no KD, logit KD (teacher sees every patch),
# MaskedKD keeping 75/50/25% by student attention, and the random-50% and
# bottom-k-50% ablations, over several seeds. Writes
#   runs/repro/table.md  mean +- std top-1 and teacher GFLOPs per variant
#   runs/repro/plot.png  accuracy vs teacher FLOPs (if matplotlib is there)
# Env: SEEDS (default "0 1 2"), EPOCHS (default: the student config's),
#      MKD_STUDENT (binary; default build/bin/mkd-student),
#      TEACHER (weights; default: the demo's, assets/fmnist_teacher.safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${SEEDS:-"0 1 2"}
bin=${MKD_STUDENT:-build/bin/mkd-student}
out=runs/repro
mkdir -p "$out"

TEACHER=${TEACHER:-assets/fmnist_teacher.safetensors}  # The demo's committed teacher.
extra=()
[[ -n "${EPOCHS:-}" ]] && extra+=(--set "optim.epochs=$EPOCHS")

# name | overrides
variants=(
  "no KD|--set mode=train"
  "logit KD (keep 100%)|--set distill.criterion=all --set distill.keep_ratio=1"
  "MaskedKD keep 75%|--set distill.keep_ratio=0.75"
  "MaskedKD keep 50%|--set distill.keep_ratio=0.5"
  "MaskedKD keep 25%|--set distill.keep_ratio=0.25"
  "random 50%|--set distill.criterion=random --set distill.keep_ratio=0.5"
  "bottom-k 50%|--set distill.criterion=bottomk --set distill.keep_ratio=0.5"
)
results="$out/results.tsv"
: >"$results"
for v in "${variants[@]}"; do
  name=${v%%|*}
  read -r -a sets <<<"${v#*|}"
  for seed in $seeds; do
    dir="$out/$(tr ' %()' '____' <<<"$name")_s$seed"
    rm -rf "$dir"
    log=$($bin train --config configs/fmnist_student.yaml --set distill.teacher_weights="$TEACHER" \
          --set seed="$seed" --set run.out_dir="$dir" --set run.eval_every_epochs=0 \
          "${sets[@]}" ${extra[@]+"${extra[@]}"})
    summary=$(grep '^summary:' <<<"$log")
    top1=$(sed -n 's/.*top1 \([0-9.]*\)%.*/\1/p' <<<"$summary")
    gflops=$(sed -n 's/.*teacher GFLOPs \([0-9.]*\) vs.*/\1/p' <<<"$summary")
    printf '%s\t%s\t%s\t%s\n' "$name" "$seed" "$top1" "${gflops:-0}" | tee -a "$results"
  done
done

{
  echo "| variant | top-1 (%) mean ± std | teacher GFLOPs (total) |"
  echo "|---|---|---|"
  awk -F'\t' '{n[$1]++; s[$1]+=$3; q[$1]+=$3*$3; f[$1]+=$4; if (!($1 in o)) o[$1]=NR}
    END {for (k in o) {m=s[k]/n[k]; v=q[k]/n[k]-m*m; if (v<0) v=0;
         printf "%d\t| %s | %.2f ± %.2f | %.1f |\n", o[k], k, m, sqrt(v), f[k]/n[k]}}' "$results" |
    sort -n | cut -f2-
} >"$out/table.md"
cat "$out/table.md"

if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  /usr/bin/python3 - "$results" "$out/plot.png" <<'PY'
import collections, sys
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, seed, top1, gflops = line.rstrip("\n").split("\t")
    rows[name].append((float(gflops), float(top1)))
fig, ax = plt.subplots(figsize=(6, 4))
for name, pts in rows.items():
    xs, ys = zip(*pts)
    ax.errorbar(sum(xs) / len(xs), sum(ys) / len(ys), fmt="o", label=name)
ax.set_xlabel("teacher GFLOPs per training run"); ax.set_ylabel("student top-1 (%)")
ax.legend(fontsize=7); fig.tight_layout(); fig.savefig(sys.argv[2], dpi=100)
print(sys.argv[2])
PY
fi
