#!/usr/bin/env python3
"""Summarises bench/reproduce_fmnist.sh's results.tsv into table.md (mean ±
std top-1 per variant over its seeds, teacher GFLOPs, and the difference
to logit KD) and, if matplotlib is there, plot.png (top-1 against teacher
GFLOPs, one point per run and the mean per variant).

Usage: repro_table.py OUT_DIR [CONFIG TEACHER]  (the last two are only
printed under the table, to say what it is a table of)."""
import collections
import math
import os
import sys


def main():
    out = sys.argv[1]
    rows = collections.OrderedDict()
    with open(os.path.join(out, "results.tsv")) as f:
        for line in f:
            # An optional sixth field says where the run ran (G: GPU, C: CPU).
            name, seed, top1, gflops, wall, *where = line.rstrip("\n").split("\t")
            # wall may be empty: a run made outside reproduce_fmnist.sh.
            rows.setdefault(name, []).append((int(seed), float(top1), float(gflops),
                                              float(wall) if wall else None,
                                              where[0] if where else ""))
    order = ["no KD", "logit KD (keep 100%)", "MaskedKD keep 75%", "MaskedKD keep 50%",
             "MaskedKD keep 25%", "random 50%", "bottom-k 50%"]
    names = [n for n in order if n in rows] + [n for n in rows if n not in order]

    def stats(xs):
        m = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
        return m, sd

    def wall_mean(rs):
        walls = [r[3] for r in rs if r[3] is not None]
        return f"{sum(walls) / len(walls):.0f}" if walls else "–"

    def where(rs):
        return " ".join(f"{r[4]}{r[0]}" for r in sorted(rs))

    logit = stats([r[1] for r in rows["logit KD (keep 100%)"]])[0] if "logit KD (keep 100%)" in rows else None
    located = any(r[4] for rs in rows.values() for r in rs)
    last = "ran on (by seed)" if located else "wall s per run"
    lines = [f"| variant | seeds | top-1 (%) mean ± std | vs logit KD (points) | teacher GFLOPs per run | {last} |",
             "|---|---|---|---|---|---|"]
    for n in names:
        rs = rows[n]
        m, sd = stats([r[1] for r in rs])
        delta = f"{m - logit:+.2f}" if logit is not None and n != "no KD" else "–"
        lines.append(f"| {n} | {len(rs)} | {m:.2f} ± {sd:.2f} | {delta} | "
                     f"{sum(r[2] for r in rs) / len(rs):.1f} | {where(rs) if located else wall_mean(rs)} |")
    if len(sys.argv) > 3:
        lines.append("")
        lines.append(f"(student config {sys.argv[2]}, teacher {sys.argv[3]}; std over seeds, n-1)")
    text = "\n".join(lines) + "\n"
    open(os.path.join(out, "table.md"), "w").write(text)
    print(text, end="")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no matplotlib: no plot)")
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for n in names:
        rs = rows[n]
        xs = [r[2] for r in rs]
        ys = [r[1] for r in rs]
        m, sd = stats(ys)
        p = ax.errorbar(sum(xs) / len(xs), m, yerr=sd, fmt="o", capsize=3, label=n)
        ax.scatter(xs, ys, s=8, alpha=0.4, color=p[0].get_color())
    if len(sys.argv) > 3:
        ax.set_title(f"{os.path.basename(sys.argv[2])}, teacher {sys.argv[3]}", fontsize=8)
    ax.set_xlabel("teacher GFLOPs per training run")
    ax.set_ylabel("student top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "plot.png"), dpi=110)
    print(os.path.join(out, "plot.png"))


if __name__ == "__main__":
    main()
