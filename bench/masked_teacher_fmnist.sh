#!/usr/bin/env bash
# How good is the teacher when it sees only part of its patches? (Not run by
# CI.) On the Fashion-MNIST test set, runs a teacher on all its patches and
# on KEEP of them chosen by a student's CLS attention (top-k), at random,
# and bottom-k, all through `mkd predict` / `mkd mask`, and prints each
# masked teacher's top-1, its agreement with the full teacher and
# KL(full || masked). This is the premise MaskedKD rests on.
# Env: TEACHER, STUDENT (weights; default: the demo's committed teacher and
#      runs/fmnist_student's latest checkpoint), TEACHER_MODEL (its model
#      YAML; default the demo teacher's), STUDENT_CONFIG (the student's
#      training config, for its model; default the demo student's), KEEP
#      (default 0.5), OUT (default runs/masked_teacher), MKD (default build/bin/mkd).
# Images are resized to the teacher's img_size as the trainer's evaluation does.
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
out=${OUT:-runs/masked_teacher}
keep=${KEEP:-0.5}
mkdir -p "$out"
teacher_model=$(realpath "${TEACHER_MODEL:-configs/fmnist_teacher_model.yaml}")
# The student's architecture is the `model:` section of its training config.
/usr/bin/python3 - "${STUDENT_CONFIG:-configs/fmnist_student.yaml}" "$teacher_model" "$out" "$keep" <<'PY'
import gzip, math, sys, numpy as np, yaml
cfg, teacher_model, out, keep = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
yaml.safe_dump(yaml.safe_load(open(cfg))["model"], open(out + "/student_model.yaml", "w"))
t = yaml.safe_load(open(teacher_model))
size, n = t["img_size"], (t["img_size"] // t["patch_size"]) ** 2
k = max(1, math.floor(keep * n + 0.5))  # KeepCount: round half away from zero.
d = "/usr/share/datasets/fashion-mnist/"
x = np.frombuffer(gzip.open(d + "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
x = x.reshape(-1, 1, 28, 28).astype(np.float32) / 255

def bilinear_axis(a, axis, out):  # align_corners false, as the trainer's Resize.
    n_in = a.shape[axis]
    src = np.maximum((np.arange(out) + 0.5) * n_in / out - 0.5, 0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = (src - i0).astype(np.float32)
    shape = [1] * a.ndim
    shape[axis] = out
    return np.take(a, i0, axis) * (1 - w.reshape(shape)) + np.take(a, i1, axis) * w.reshape(shape)

if size != 28:
    x = bilinear_axis(bilinear_axis(x, 2, size), 3, size)
x = ((x - 0.2860) / 0.3530).astype(np.float32)
y = np.frombuffer(gzip.open(d + "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
rng = np.random.default_rng(0)
np.save(out + "/x.npy", x)
np.save(out + "/y.npy", y.astype(np.int64))
np.save(out + "/idx_random.npy", np.stack([np.sort(rng.permutation(n)[:k]) for _ in y]).astype(np.int64))
open(out + "/grid.txt", "w").write(f"{n} {k}\n")
PY
cd "$out"
"$mkd" predict --model "$teacher_model" --weights "$TEACHER" --images x.npy --out full.npy
"$mkd" predict --model student_model.yaml --weights "$STUDENT" --images x.npy --out student.npy \
  --saliency-out saliency.npy
for c in student_topk bottomk; do
  "$mkd" mask --saliency saliency.npy --teacher "$teacher_model" --keep-ratio "$keep" --criterion $c \
    --out idx_$c.npy
done
for c in student_topk random bottomk; do
  "$mkd" predict --model "$teacher_model" --weights "$TEACHER" --images x.npy --keep idx_$c.npy \
    --out masked_$c.npy
done
/usr/bin/python3 - <<'PY'
import numpy as np
y, full = np.load("y.npy"), np.load("full.npy")
n, k = map(int, open("grid.txt").read().split())
def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
pf = softmax(full)
print("| teacher input | top-1 (%) | agrees with full teacher (%) | KL(full ‖ masked) |")
print("|---|---|---|---|")
print(f"| all {n} patches | {100 * (full.argmax(1) == y).mean():.2f} | 100 | 0 |")
for c in ["student_topk", "random", "bottomk"]:
    m = np.load(f"masked_{c}.npy")
    pm = softmax(m)
    kl = (pf * (np.log(pf + 1e-12) - np.log(pm + 1e-12))).sum(1).mean()
    print(f"| {k} patches, {c} | {100 * (m.argmax(1) == y).mean():.2f} | "
          f"{100 * (m.argmax(1) == full.argmax(1)).mean():.2f} | {kl:.3f} |")
print(f"(student alone: {100 * (np.load('student.npy').argmax(1) == y).mean():.2f}%)")
PY
