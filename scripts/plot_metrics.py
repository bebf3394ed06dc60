#!/usr/bin/python3
"""Turns a run's metrics.jsonl into a PNG of loss and accuracy curves.

Usage: /usr/bin/python3 scripts/plot_metrics.py runs/x/metrics.jsonl [out.png]
Needs Debian's python3-matplotlib (scripts/setup.sh installs it).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else path.rsplit(".", 1)[0] + ".png"
    train, evals = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not JSON: {e}")
            (train if row.get("type") == "train" else evals).append(row)
    if not train:
        sys.exit(f"{path}: no training rows")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if any(r.get("kd") for r in train):
        ax_loss.plot([r["step"] for r in train], [r["ce"] for r in train], label="CE", alpha=0.6)
        ax_loss.plot([r["step"] for r in train], [r["kd"] for r in train], label="KD", alpha=0.6)
    if evals:
        ax_loss.plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="eval loss")
        ax_acc.plot([r["epoch"] for r in evals], [100 * r["top1"] for r in evals], "o-", label="top-1")
        ax_acc.plot([r["epoch"] for r in evals], [100 * r["top5"] for r in evals], "s--", label="top-5")
    ax_loss.set_xlabel("step")
    ax_loss.legend()
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(out)


if __name__ == "__main__":
    main()
