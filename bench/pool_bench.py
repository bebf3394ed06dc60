#!/usr/bin/python3
"""Pool benchmarks with real processes on loopback (not run by CI).

  A. "Separate machines" on one box: the demo student pinned to core 0
     (taskset), an mkd-teacher serving the demo teacher pinned to core 1,
     through mkd-coordinator. MaskedKD 50% through the pool against plain
     training (no KD) of the same student on core 0 alone; the pool's
     data plane is shared memory (auto, same host), and once gRPC bytes
     for comparison. Then each variant's micro-batch stages.
  B. Pool throughput with 1, 2 and 4 jobs on one teacher that is their
     bottleneck, against one job saturating it.
  C. Failover: time from a teacher's SIGKILL to the job's next completed step.
  D. Planner: the coordinator's predicted step time against the measured one
     for m = 1, 2, 4, 8 (measured while it explored them).

Run from the repository root after building: /usr/bin/python3 bench/pool_bench.py
Env: BIN (default build/bin), OUT (default runs/pool_bench), STEPS (default 300),
ROUNDS (A's interleaved rounds, default 3).
Throughputs come from the steps' wall-clock times in each run's metrics.jsonl
(the first 10% of steps are warm-up and left out).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

BIN = os.environ.get("BIN", "build/bin")
OUT = os.path.abspath(os.environ.get("OUT", "runs/pool_bench"))
STEPS = int(os.environ.get("STEPS", "300"))
procs = []


def start(name, cmd, core=None):
    if core is not None:
        cmd = ["taskset", "-c", str(core)] + cmd
    log = open(os.path.join(OUT, name + ".log"), "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    return p


def wait_line(name, pattern, timeout=120):
    path = os.path.join(OUT, name + ".log")
    end = time.time() + timeout
    while time.time() < end:
        m = re.search(pattern, open(path).read())
        if m:
            return m
        time.sleep(0.05)
    sys.exit(f"{name}: no '{pattern}' in {timeout} s; see {path}")


def coordinator(name, explore_steps=3):
    start(name, [f"{BIN}/mkd-coordinator", "--set", "listen=127.0.0.1:0", "--set",
                 "metrics_listen=\"\"", "--set", "heartbeat_s=0.2", "--set", "lease_s=1",
                 "--set", "settle_s=0.4", "--set", f"explore_steps={explore_steps}",
                 "--set", "tls.insecure=true", "--set", "auth.insecure=true"], core=1)
    return "127.0.0.1:" + wait_line(name, r"on port (\d+)").group(1)


def teacher(name, weights, coord, model="configs/fmnist_teacher_model.yaml", core=1):
    p = start(name, [f"{BIN}/mkd-teacher", "--config", "configs/fmnist_teacher_server.yaml",
                     "--set", f"model={model}", "--set", f"weights={weights}", "--set",
                     "threads=1", "--set", "listen=127.0.0.1:0", "--set", "metrics_listen=\"\"",
                     "--set", f"coordinator={coord}", "--set", "auth.pool_secret_file=",
                     "--set", "auth.insecure=true"], core=core)
    port = wait_line(name, r" on port (\d+)").group(1)
    wait_line(name, "joined the pool")
    return p, "127.0.0.1:" + port


def student(name, sets, core=0, config="configs/fmnist_student.yaml", steps=None):
    cmd = [f"{BIN}/mkd-student", "train", "--config", config,
           "--set", f"run.out_dir={OUT}/{name}", "--set", "run.log_every_steps=1",
           "--set", "run.threads=1", "--set", "run.eval_every_epochs=0",
           "--set", f"run.max_steps={steps or STEPS}", "--set", "tls.insecure=true"]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(["rm", "-rf", f"{OUT}/{name}"])
    return start(name, cmd, core=core)


def train_lines(name):
    path = f"{OUT}/{name}/metrics.jsonl"
    if not os.path.exists(path):
        return []
    return [j for j in map(json.loads, open(path)) if j.get("type") == "train"]


def images_per_s(name, batch, lines=None):
    lines = lines if lines is not None else train_lines(name)
    lines = lines[len(lines) // 10:]
    return batch * (len(lines) - 1) / (lines[-1]["time"] - lines[0]["time"])


def must(p, name):
    if p.wait() != 0:
        sys.exit(f"{name} failed; see {OUT}/{name}.log")


def stop_all():
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    procs.clear()


def make_teacher_weights(name, model=None):
    """Random-ish weights (one training step): only the cost matters here."""
    out = f"{OUT}/{name}"
    extra = ["--set", f"model={model}"] if model else []
    must(start(name, [f"{BIN}/mkd-student", "train", "--config", "configs/fmnist_teacher.yaml",
                      "--set", f"run.out_dir={out}", "--set", "run.max_steps=1",
                      "--set", "run.eval_every_epochs=0", "--set", "data.limit_train=512"] + extra),
         name)
    return f"{out}/checkpoints/step_00000001.model.safetensors"


def separate_cores(weights, rounds=int(os.environ.get("ROUNDS", "3"))):
    print(f"A. separate cores: student on core 0, teacher on core 1 (demo models, batch 128; "
          f"{rounds} interleaved rounds, medians)")
    coord = coordinator("a_coord")
    teacher("a_teacher", weights, coord)
    variants = [("no KD, core 0 alone", ["mode=train"]),
                ("MaskedKD 50% via the pool, planned m", ["distill.micro_batches=0"]),
                ("MaskedKD 50% via the pool, m=4", ["distill.micro_batches=4"]),
                ("MaskedKD 50%, m=4, gRPC bytes", ["distill.micro_batches=4",
                                                    "distill.data_plane=grpc"])]
    ips = {label: [] for label, _ in variants}
    stages = {label: [] for label, _ in variants}  # Per-step stage means (metrics.jsonl).
    planned = []
    for r in range(rounds):
        for i, (label, sets) in enumerate(variants):
            name = f"a{r}_{i}"
            must(student(name, [f"distill.teacher_weights={weights}",
                                f"distill.coordinator={coord}"] + sets), name)
            lines = train_lines(name)
            if "planned" in label:  # After exploring, at the planner's choice.
                final = lines[-1]["micro_batches"]
                planned.append(final)
                lines = [j for j in lines[len(lines) // 2:] if j["micro_batches"] == final]
            ips[label].append(images_per_s(name, 128, lines))
            stages[label] += [j["stages"] for j in lines[len(lines) // 10:] if "stages" in j]
    stop_all()
    plain = ips[variants[0][0]]
    for label, values in ips.items():
        ratios = sorted(v / p for v, p in zip(values, plain))
        extra = f" (m chosen: {planned})" if "planned" in label else ""
        print(f"  {label:40s} {sorted(values)[len(values) // 2]:8.1f} img/s  "
              f"{ratios[len(ratios) // 2]:.2f}x (per round: "
              f"{', '.join(f'{x:.2f}' for x in ratios)}){extra}")
    print_stages({label: v for label, v in stages.items() if v})


def print_stages(stages):
    """Mean ms per micro-batch of each stage (common/micro_batch_stages.h), per variant."""
    order = ["student_forward", "selection", "teacher_forward", "device_to_host", "encode",
             "send", "server_decode", "server_queue", "server_forward", "server_encode",
             "transfer", "decode", "wait", "host_to_device", "loss_backward"]
    labels = list(stages)
    print(f"  {'stage (ms/mb)':16s}" + "".join(f" {l[-22:]:>22s}" for l in labels))
    sums = [0.0] * len(labels)
    for st in order:
        row = []
        for i, l in enumerate(labels):
            vals = [s[st] for s in stages[l] if st in s]
            if vals:
                mean = 1e3 * sum(vals) / len(vals)
                sums[i] += mean
                row.append(f" {mean:22.3f}")
            else:
                row.append(f" {'-':>22s}")
        if any(r.strip() != "-" for r in row):
            print(f"  {st:16s}" + "".join(row))
    print(f"  {'sum':16s}" + "".join(f" {x:22.3f}" for x in sums))


def pool_throughput():
    print("B. pool throughput on one teacher (6x256 ViT on core 1; 1x32 students, m=8, core 0)")
    # The teacher must be the bottleneck, so the students are tiny: what is
    # measured is what sharing costs the teacher (batching, fair share).
    model = f"{OUT}/heavy_model.yaml"
    open(model, "w").write("img_size: 28\npatch_size: 7\nin_chans: 1\nembed_dim: 256\n"
                           "depth: 6\nnum_heads: 4\nnum_classes: 10\nmean: [0.286]\n"
                           "std: [0.353]\n")
    weights = make_teacher_weights("heavy_weights", model)
    tiny = ["model.embed_dim=32", "model.depth=1", "model.num_heads=2", "data.workers=1"]
    results = {}
    for jobs in (1, 2, 4):
        coord = coordinator(f"b_coord{jobs}")
        teacher(f"b_teacher{jobs}", weights, coord, model=model)
        names = [f"b{jobs}_{i}" for i in range(jobs)]
        ps = [student(n, [f"distill.teacher_weights={weights}", f"distill.coordinator={coord}",
                          "distill.micro_batches=8", f"distill.teacher_model={model}"] + tiny,
                      steps=40 * jobs)
              for n in names]
        for p, n in zip(ps, names):
            must(p, n)
        # Images per second of all jobs together while all of them ran.
        lines = {n: train_lines(n)[4:] for n in names}
        t0 = max(l[0]["time"] for l in lines.values())
        t1 = min(l[-1]["time"] for l in lines.values())
        steps = sum(sum(1 for j in l if t0 < j["time"] <= t1) for l in lines.values())
        results[jobs] = 128 * steps / (t1 - t0)
        stop_all()
    for jobs, ips in results.items():
        print(f"  {jobs} job(s): {ips:8.1f} img/s in all, {ips / results[1]:.2f}x one job")


def failover(weights):
    print("C. failover: SIGKILL one of two teachers mid-training")
    coord = coordinator("c_coord")
    t1, _ = teacher("c_t1", weights, coord)
    teacher("c_t2", weights, coord)
    p = student("failover", [f"distill.teacher_weights={weights}", f"distill.coordinator={coord}",
                             "distill.micro_batches=4"])
    while len(train_lines("failover")) < STEPS // 2:
        time.sleep(0.05)
    killed = time.time()
    t1.kill()
    must(p, "failover")
    stop_all()
    lines = train_lines("failover")
    after = min(j["time"] for j in lines if j["time"] > killed)
    gaps = sorted(b["time"] - a["time"] for a, b in zip(lines, lines[1:]))
    print(f"  SIGKILL to the next completed step: {after - killed:.3f} s "
          f"(median step {gaps[len(gaps) // 2]:.3f} s); steps logged once each: "
          f"{sorted(j['step'] for j in lines) == list(range(1, len(lines) + 1))}")


def planner(weights):
    print("D. planner: predicted vs measured step time per m (explored 40 steps each)")
    coord = coordinator("d_coord", explore_steps=40)
    teacher("d_teacher", weights, coord)
    p = student("planned", [f"distill.teacher_weights={weights}", f"distill.coordinator={coord}",
                            "distill.micro_batches=0"])
    status = None
    # `mkd` loads LibTorch (~1 s of CPU): ask once, after the exploration.
    while p.poll() is None and (status is None or status["micro_batches"] == 0):
        lines = train_lines("planned")
        if len(lines) > 4 * 40 + 10:
            out = subprocess.run([f"{BIN}/mkd", "status", "--coordinator", coord, "--json", "--insecure"],
                                 capture_output=True, text=True)
            if out.returncode == 0:
                jobs = json.loads(out.stdout)["jobs"].get("jobs", [])
                if jobs and len(jobs[0].get("predicted_step_s_by_m", [])) >= 8:
                    status = jobs[0]
        time.sleep(0.2)
    must(p, "planned")
    stop_all()
    lines = train_lines("planned")
    print(f"  {'m':>3} {'measured':>10} {'predicted':>10} {'error':>7}")
    for m in (1, 2, 4, 8):
        steps = [j["step_seconds"] for j in lines if j["micro_batches"] == m][5:]
        if not steps or status is None:
            continue
        measured = sum(steps) / len(steps)
        predicted = status["predicted_step_s_by_m"][m - 1]
        print(f"  {m:>3} {measured:9.4f}s {predicted:9.4f}s {100 * (predicted / measured - 1):+6.1f}%")
    if status:
        print(f"  planned m = {status['micro_batches']}")


def main():
    os.makedirs(OUT, exist_ok=True)
    parts = sys.argv[1:] or ["A", "B", "C", "D"]  # Or any of them: pool_bench.py B D
    weights = make_teacher_weights("demo_teacher_weights")
    try:
        for part, run in (("A", lambda: separate_cores(weights)), ("B", pool_throughput),
                          ("C", lambda: failover(weights)), ("D", lambda: planner(weights))):
            if part in parts:
                run()
    finally:
        stop_all()


if __name__ == "__main__":
    main()
