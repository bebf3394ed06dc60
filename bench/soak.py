#!/usr/bin/python3
"""Soak: one mkd-teacher under 8 concurrent Distill streams from 4 jobs, for
30 minutes (not in CI; issue 11 item 10).

    /usr/bin/python3 bench/soak.py [--duration-s 1800] [--out runs/soak]

Starts build/bin/mkd-teacher (the demo's Fashion-MNIST teacher,
configs/fmnist_teacher_server.yaml, on loopback) and 4 client processes,
one per job, each with 2 streams that send micro-batches (b = 8, k = 8 of
16 patches, 2 in flight per stream). Clients cancel a stream at random
(about once a minute per stream) and open a new one; every minute one
client process is killed (SIGKILL) and restarted. The teacher's RSS is
sampled every 5 s. The report (stdout and <out>/soak.json): RSS after
warm-up (the first 5 minutes) and its growth to the end (target < 5%),
answers by status code, and round-trip latency p50 / p99 of answered
micro-batches. Needs Debian's python3-grpcio and numpy (scripts/setup.sh).
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gen_protos(tmp):
    subprocess.run(["protoc", "--proto_path", os.path.join(ROOT, "proto"), "--python_out", tmp,
                    "maskedkd/v1/teacher.proto"], check=True)


def client(port, job, pygen, out_path, seed):
    """One job: 2 streams until killed; appends a JSON line per answer."""
    import grpc
    import numpy as np
    sys.path.insert(0, pygen)
    from maskedkd.v1 import teacher_pb2 as pb
    rng = random.Random(seed)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=60)
    distill = channel.stream_stream(
        "/maskedkd.v1.TeacherService/Distill",
        request_serializer=pb.DistillRequest.SerializeToString,
        response_deserializer=pb.DistillResponse.FromString)
    b, k, patch = 8, 8, 49  # 28x28 grey images, 7x7 patches: N = 16.
    lock = threading.Lock()
    out = open(out_path, "a", buffering=1)
    next_id = [rng.getrandbits(40) << 8]

    def stream_loop(sid):
        while True:
            sent = {}
            window = threading.Semaphore(2)
            stop = threading.Event()

            def requests():
                while not stop.is_set():
                    window.acquire()
                    if stop.is_set():
                        return
                    with lock:
                        next_id[0] += 1
                        mb = next_id[0]
                    idx = np.stack([np.sort(np.random.permutation(16)[:k]) for _ in range(b)])
                    sent[mb] = time.time()
                    yield pb.DistillRequest(
                        job_id=job, micro_batch_id=mb, micro_batch_size=b, kept_patches=k,
                        kept_indices=idx.astype("<i4").tobytes(),
                        payload_kind=pb.PAYLOAD_KIND_KEPT_PATCHES, payload_dtype=pb.DTYPE_F32,
                        payload=np.random.randn(b, k, patch).astype("<f4").tobytes(),
                        timeout_ms=30000)

            call = distill(requests())
            cancel_at = time.time() + rng.expovariate(1 / 60.0)
            try:
                for r in call:
                    now = time.time()
                    t0 = sent.pop(r.micro_batch_id, now)
                    out.write(json.dumps({"t": now, "code": r.code, "rtt": now - t0}) + "\n")
                    window.release()
                    if now > cancel_at:
                        call.cancel()
                        out.write(json.dumps({"t": now, "event": "cancel"}) + "\n")
                        break
            except grpc.RpcError as e:
                code = e.code().name if e.code() else "UNKNOWN"
                out.write(json.dumps({"t": time.time(), "stream_error": code}) + "\n")
            stop.set()
            window.release()
            time.sleep(0.1)

    threads = [threading.Thread(target=stream_loop, args=(s,), daemon=True) for s in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client(*sys.argv[2:6], int(sys.argv[6]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration-s", type=float, default=1800)
    ap.add_argument("--warmup-s", type=float, default=300)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "soak"))
    ap.add_argument("--bin", default=os.environ.get("MKD_BIN_DIR", os.path.join(ROOT, "build/bin")))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp()
    gen_protos(tmp)
    port = 50300 + os.getpid() % 500
    teacher = subprocess.Popen(
        [os.path.join(args.bin, "mkd-teacher"), "--config", "configs/fmnist_teacher_server.yaml",
         "--set", "weights=assets/fmnist_teacher.safetensors", "--set", f"listen=127.0.0.1:{port}",
         "--set", "metrics_listen=", "--set", "threads=1",
         # Open on loopback, said by name: the soak measures serving, not auth.
         "--set", "auth.pool_secret_file=", "--set", "auth.insecure=true"],
        cwd=ROOT, stdout=open(os.path.join(args.out, "teacher.log"), "w"), stderr=subprocess.STDOUT)
    jobs = [f"soak-{j}" for j in range(4)]
    logs = {j: os.path.join(args.out, f"{j}.jsonl") for j in jobs}
    for p in logs.values():
        open(p, "w").close()

    def spawn(j, seed):
        return subprocess.Popen([sys.executable, __file__, "--client", str(port), j, tmp, logs[j],
                                 str(seed)], cwd=ROOT, stderr=subprocess.DEVNULL)

    clients = {j: spawn(j, i) for i, j in enumerate(jobs)}
    start = time.time()
    rss, kills, next_kill, victim = [], 0, start + 60, 0
    try:
        while time.time() - start < args.duration_s:
            if teacher.poll() is not None:
                raise SystemExit(f"soak: mkd-teacher exited ({teacher.returncode}); see teacher.log")
            rss.append((time.time() - start, rss_kb(teacher.pid)))
            if time.time() >= next_kill:
                j = jobs[victim % len(jobs)]
                clients[j].send_signal(signal.SIGKILL)
                clients[j].wait()
                clients[j] = spawn(j, 100 + kills)
                kills, victim, next_kill = kills + 1, victim + 1, next_kill + 60
            time.sleep(5)
    finally:
        for c in clients.values():
            c.kill()
        teacher.send_signal(signal.SIGTERM)
        teacher.wait(timeout=60)
    codes, rtts, cancels, stream_errors = {}, [], 0, {}
    for p in logs.values():
        with open(p) as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue  # A line cut by SIGKILL.
                if "code" in e:
                    codes[e["code"]] = codes.get(e["code"], 0) + 1
                    if e["code"] == 0:
                        rtts.append(e["rtt"])
                elif e.get("event") == "cancel":
                    cancels += 1
                elif "stream_error" in e:
                    stream_errors[e["stream_error"]] = stream_errors.get(e["stream_error"], 0) + 1
    rtts.sort()
    after = [kb for t, kb in rss if t >= args.warmup_s] or [kb for _, kb in rss]
    report = {
        "duration_s": round(time.time() - start), "clients_killed": kills,
        "streams_cancelled": cancels, "stream_errors_by_code": stream_errors,
        "answers_by_code": {str(c): n for c, n in sorted(codes.items())},
        "latency_p50_ms": round(1000 * rtts[len(rtts) // 2], 2) if rtts else None,
        "latency_p99_ms": round(1000 * rtts[int(len(rtts) * 0.99)], 2) if rtts else None,
        "rss_after_warmup_kb": after[0], "rss_end_kb": after[-1], "rss_max_kb": max(after),
        "rss_growth_after_warmup_pct": round(100.0 * (after[-1] - after[0]) / after[0], 2),
        "rss_samples": rss,
    }
    with open(os.path.join(args.out, "soak.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "rss_samples"}, indent=1))


if __name__ == "__main__":
    main()
