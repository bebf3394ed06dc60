#!/usr/bin/env bash
# The README's main command: MaskedKD on real data, end to end, on one machine.
#   1. take the demo's ViT teacher for Fashion-MNIST (Debian's
#      dataset-fashion-mnist): the committed assets/fmnist_teacher.safetensors,
#      checked against its recorded SHA-256; with --retrain-teacher, train it
#      afresh from configs/fmnist_teacher.yaml (~10 minutes, cached) and
#      record the new weights in assets/;
#   2. start the service on loopback: mkd-coordinator and an mkd-teacher
#      serving that teacher, which joins the coordinator's pool;
#   3. distill a smaller ViT student from it twice, with logit KD and with
#      MaskedKD keeping 50% of the teacher's patches, each a job of the
#      pool (the coordinator plans each job's micro-batches), one after
#      the other with the same seed and steps;
#   4. print the pool (`mkd status`) during each, then both students'
#      accuracy, teacher FLOPs and wall time side by side.
# --tokens 49: the same on the fidelity study's 49-token setting (4x4
# patches; bench/fidelity.md): assets/fmnist49_teacher.safetensors and
# configs/fidelity/, where MaskedKD comes much closer to logit KD. It takes
# about 3x longer per step (≈ 20 minutes of training on 2 cores at the
# config's 5 epochs; --epochs N changes both students').
# Every process it starts is stopped when it ends, also on Ctrl-C.
# Cache (--retrain-teacher): $MKD_CACHE (default ~/.cache/maskedkd) keeps
# the trained teacher, keyed by a hash of its config; delete it to retrain.
set -euo pipefail
cd "$(dirname "$0")/.."
retrain=0
tokens=16
epochs=()
usage() { echo "usage: scripts/demo.sh [--retrain-teacher] [--tokens 16|49] [--epochs N]" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --retrain-teacher) retrain=1 ;;
    --tokens) tokens=${2:-}; shift ;;
    --epochs) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || usage; epochs=(--set "optim.epochs=$2"); shift ;;
    *) usage ;;
  esac
  shift
done
case "$tokens" in
  16) teacher_config=configs/fmnist_teacher.yaml teacher_model=configs/fmnist_teacher_model.yaml
      student_config=configs/fmnist_student.yaml asset=assets/fmnist_teacher.safetensors
      record=assets/fmnist_teacher.json name=fmnist_teacher sname=fmnist_student ;;
  49) teacher_config=configs/fidelity/fmnist49_teacher.yaml
      teacher_model=configs/fidelity/fmnist49_teacher_model.yaml
      student_config=configs/fidelity/fmnist49_student.yaml asset=assets/fmnist49_teacher.safetensors
      record=assets/fmnist49_teacher.json name=fmnist49_teacher sname=fmnist49_student ;;
  *) echo "demo: --tokens must be 16 or 49, got '$tokens'" >&2; usage ;;
esac
bash scripts/setup.sh
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target mkd-student mkd mkd-teacher mkd-coordinator -j "$(nproc)"

student_bin=build/bin/mkd-student
mkdir -p runs
start=$(date +%s)

if ((retrain)); then
  cache="${MKD_CACHE:-$HOME/.cache/maskedkd}"
  key=$(cat "$teacher_config" "$teacher_model" | sha256sum | cut -c1-12)
  teacher="$cache/${name}_$key.safetensors"
  mkdir -p "$cache"
  if [[ -f "$teacher" ]]; then
    echo "== teacher: reusing $teacher"
  else
    echo "== teacher: training ($teacher_config)"
    rm -rf "runs/$name"
    $student_bin train --config "$teacher_config" --set run.out_dir="runs/$name" 2>&1 | tee "runs/$name.log"
    step=$(cat "runs/$name/checkpoints/latest")
    cp "$(printf 'runs/%s/checkpoints/step_%08d.model.safetensors' "$name" "$step")" "$teacher.tmp"
    mv "$teacher.tmp" "$teacher"
  fi
else
  teacher=$asset
  want=$(sed -n 's/.*"sha256": "\([0-9a-f]*\)".*/\1/p' "$record")
  have=$(sha256sum "$teacher" | cut -d' ' -f1)
  if [[ "$have" != "$want" ]]; then
    echo "demo: $teacher has SHA-256 $have, $record says $want; rerun with --retrain-teacher" >&2
    exit 1
  fi
  echo "== teacher: $teacher (SHA-256 checked; --retrain-teacher trains it afresh)"
fi
teacher_eval=$($student_bin eval --config "$teacher_config" --checkpoint "$teacher")
echo "$teacher_eval"
if ((retrain)); then  # The new weights become the committed ones.
  cp "$teacher" "$asset"
  top1=$(sed -n 's/.*top1 \([0-9.]*\)%.*/\1/p' <<<"$teacher_eval")
  top5=$(sed -n 's/.*top5 \([0-9.]*\)%.*/\1/p' <<<"$teacher_eval")
  sed -i -e "s/\"sha256\": \"[0-9a-f]*\"/\"sha256\": \"$(sha256sum "$asset" | cut -d' ' -f1)\"/" \
    -e "s/\"top1\": \"[0-9.]*\"/\"top1\": \"$top1\"/" -e "s/\"top5\": \"[0-9.]*\"/\"top5\": \"$top5\"/" \
    "$record"
  echo "== recorded the new teacher in $asset and $record"
fi

# The service, on loopback: a coordinator, and the teacher in its pool.
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
port_of() {  # Waits (at most 60 s) for "<what> port N" in a log; prints N.
  for _ in $(seq 600); do
    if p=$(grep -o "$2 port [0-9]*" "$1" 2>/dev/null | head -n 1 | grep -o '[0-9]*$'); then
      echo "$p"; return 0
    fi
    sleep 0.1
  done
  echo "demo: no '$2 port' in $1" >&2; cat "$1" >&2; return 1
}
# Plaintext on loopback, said by name (each binary warns), secured by a
# pool secret made now: the teacher signs its own token with it, each job
# and the operator show one minted from it (docs/security.md; the same pool
# over mutual TLS is shown there too).
secrets=runs/demo-secrets
bash scripts/pool_secrets.sh "$secrets" build/bin/mkd logit-kd maskedkd-50
build/bin/mkd-coordinator --set listen=127.0.0.1:0 --set metrics_listen=\"\" \
  --set heartbeat_s=0.5 --set lease_s=3 --set tls.insecure=true \
  --set auth.pool_secret_file="$secrets/pool.secret" > runs/coordinator.log 2>&1 &
pids+=($!)
coordinator="127.0.0.1:$(port_of runs/coordinator.log 'listening on')"
# One thread each: on 2 cores the teacher and the student run side by side.
build/bin/mkd-teacher --config configs/fmnist_teacher_server.yaml --set model="$teacher_model" \
  --set weights="$teacher" \
  --set listen=127.0.0.1:0 --set metrics_listen=\"\" --set threads=1 \
  --set coordinator="$coordinator" --set auth.pool_secret_file="$secrets/pool.secret" \
  > runs/teacher_server.log 2>&1 &
pids+=($!)
port_of runs/teacher_server.log 'serving .* on' >/dev/null
echo "== service: coordinator $coordinator, teacher $(grep -o 'serving [^ ]*' runs/teacher_server.log)"

# The same student twice, one after the other, from the same teacher in the
# same pool: logit KD (the teacher sees every patch), then MaskedKD (it
# sees the 50% the student attends to). Same seed, data order and steps.
run_student() {  # run_student <name> <label> <job id> [--set ...]: trains, prints its log.
  local name=$1 label=$2 job=$3
  shift 3
  echo "== student: $label, a job of the pool"
  rm -rf "runs/$name"
  : >"runs/$name.log"  # Before tail -f below opens it (the student's redirect may come later).
  local t0
  t0=$(date +%s)
  build/bin/mkd-student train --config "$student_config" \
    --set distill.teacher_weights="$teacher" --set distill.coordinator="$coordinator" \
    --set run.threads=1 --set run.out_dir="runs/$name" --set tls.insecure=true \
    --set distill.job_id="$job" --set distill.job_token_file="$secrets/$job.token" \
    ${epochs[@]+"${epochs[@]}"} "$@" \
    > "runs/$name.log" 2>&1 &
  local student=$!
  pids+=("$student")
  tail -n +1 -f "runs/$name.log" --pid "$student" &
  # The pool as an operator sees it, once the job is training.
  for _ in $(seq 600); do
    grep -q '"type":"train"' "runs/$name/metrics.jsonl" 2>/dev/null && break
    sleep 0.5
  done
  echo "== mkd status --coordinator $coordinator"
  build/bin/mkd status --coordinator "$coordinator" --insecure \
    --token-file "$secrets/operator.token" || true
  wait "$student"
  echo "$(( $(date +%s) - t0 ))" > "runs/$name.seconds"
}
run_student "${sname}_logitkd" "logit KD (teacher sees 100% of its patches)" logit-kd \
  --set distill.criterion=all --set distill.keep_ratio=1
run_student "$sname" "MaskedKD (teacher sees the 50% of patches the student attends to)" \
  maskedkd-50

teacher_top1=$(sed -n 's/.*top1 \([0-9.]*\)%.*/\1/p' <<<"$teacher_eval")
row() {  # row <name> <label>: one line of the table from the run's summary.
  local summary top1 spent
  summary=$(grep '^summary:' "runs/$1.log")
  top1=$(sed -n 's/.*top1 \([0-9.]*\)%.*/\1/p' <<<"$summary")
  spent=$(sed -n 's/.*teacher GFLOPs \([0-9.]*\) vs.*/\1/p' <<<"$summary")
  printf '| %-30s | %8s%% | %15s | %10s s |\n' "$2" "$top1" "$spent" "$(cat "runs/$1.seconds")"
  echo "$spent" > "runs/$1.gflops"
}
echo
echo "teacher: ${teacher_top1}% top-1 on the Fashion-MNIST test set; $tokens patch tokens per image"
echo
echo "| student (same seed and steps)  |    top-1  | teacher GFLOPs  |  wall time   |"
echo "|--------------------------------|-----------|-----------------|--------------|"
row "${sname}_logitkd" "logit KD (keep 100%)"
row "$sname" "MaskedKD (keep 50%)"
echo
echo "MaskedKD spent $(awk -v a="$(cat "runs/${sname}_logitkd.gflops")" -v b="$(cat "runs/$sname.gflops")" 'BEGIN { printf "%.2f", a / b }')x fewer teacher FLOPs; demo wall time $(( $(date +%s) - start )) s"
echo "curves: /usr/bin/python3 scripts/plot_metrics.py runs/$sname/metrics.jsonl"
