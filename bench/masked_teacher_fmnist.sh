#!/usr/bin/env bash
# How good is the teacher when it sees only half of its patches? (Not run by
# CI.) On the Fashion-MNIST test set, runs the demo teacher on all 16
# patches and on 8 chosen by the demo student's CLS attention (top-k),
# at random, and bottom-k, all through `mkd predict` / `mkd mask`, and prints
# each masked teacher's top-1, its agreement with the full teacher and
# KL(full || masked). This is the premise MaskedKD rests on.
# Env: TEACHER, STUDENT (weights; default: the demo's committed teacher and
#      runs/fmnist_student's latest checkpoint), MKD (default build/bin/mkd).
set -euo pipefail
cd "$(dirname "$0")/.."
mkd=$(realpath "${MKD:-build/bin/mkd}")
TEACHER="${TEACHER:-assets/fmnist_teacher.safetensors}"
if [[ -z "${STUDENT:-}" ]]; then
  ckpt=runs/fmnist_student/checkpoints
  STUDENT=$(printf '%s/step_%08d.model.safetensors' "$ckpt" "$(cat "$ckpt/latest")")
fi
for f in "$TEACHER" "$STUDENT"; do [[ -f $f ]] || { echo "missing $f: run scripts/demo.sh first"; exit 1; }; done
TEACHER=$(realpath "$TEACHER")
STUDENT=$(realpath "$STUDENT")
out=runs/masked_teacher
mkdir -p "$out"
teacher_model=$PWD/configs/fmnist_teacher_model.yaml
# The student's architecture is the `model:` section of its training config.
/usr/bin/python3 - configs/fmnist_student.yaml "$out" <<'PY'
import gzip, sys, numpy as np, yaml
cfg, out = sys.argv[1], sys.argv[2]
yaml.safe_dump(yaml.safe_load(open(cfg))["model"], open(out + "/student_model.yaml", "w"))
d = "/usr/share/datasets/fashion-mnist/"
x = np.frombuffer(gzip.open(d + "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
x = ((x.reshape(-1, 1, 28, 28).astype(np.float32) / 255 - 0.2860) / 0.3530).astype(np.float32)
y = np.frombuffer(gzip.open(d + "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
rng = np.random.default_rng(0)
np.save(out + "/x.npy", x)
np.save(out + "/y.npy", y.astype(np.int64))
np.save(out + "/idx_random.npy", np.stack([rng.permutation(16)[:8] for _ in y]).astype(np.int64))
PY
cd "$out"
"$mkd" predict --model "$teacher_model" --weights "$TEACHER" --images x.npy --out full.npy
"$mkd" predict --model student_model.yaml --weights "$STUDENT" --images x.npy --out student.npy \
  --saliency-out saliency.npy
for c in student_topk bottomk; do
  "$mkd" mask --saliency saliency.npy --teacher "$teacher_model" --keep-ratio 0.5 --criterion $c \
    --out idx_$c.npy
done
for c in student_topk random bottomk; do
  "$mkd" predict --model "$teacher_model" --weights "$TEACHER" --images x.npy --keep idx_$c.npy \
    --out masked_$c.npy
done
/usr/bin/python3 - <<'PY'
import numpy as np
y, full = np.load("y.npy"), np.load("full.npy")
def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
pf = softmax(full)
print("| teacher input | top-1 (%) | agrees with full teacher (%) | KL(full ‖ masked) |")
print("|---|---|---|---|")
print(f"| all 16 patches | {100 * (full.argmax(1) == y).mean():.2f} | 100 | 0 |")
for c in ["student_topk", "random", "bottomk"]:
    m = np.load(f"masked_{c}.npy")
    pm = softmax(m)
    kl = (pf * (np.log(pf + 1e-12) - np.log(pm + 1e-12))).sum(1).mean()
    print(f"| 8 patches, {c} | {100 * (m.argmax(1) == y).mean():.2f} | "
          f"{100 * (m.argmax(1) == full.argmax(1)).mean():.2f} | {kl:.3f} |")
print(f"(student alone: {100 * (np.load('student.npy').argmax(1) == y).mean():.2f}%)")
PY
