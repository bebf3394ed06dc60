#!/usr/bin/python3
"""Writes the fuzzers' seed corpora into fuzz/corpus/<target>/.

Run with Debian's /usr/bin/python3 (numpy, protobuf) from the project root:
    /usr/bin/python3 fuzz/make_corpus.py
The seeds are small valid inputs (plus a few near misses), so each fuzzer
starts from the formats' real structure. protoc generates the Python
messages into a temporary directory.
"""
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    header, buf = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(buf), len(buf) + len(raw)]}
        buf += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + buf


def make_safetensors():
    f32 = np.arange(6, dtype="<f4").tobytes()
    write("safetensors_fuzz", "one_f32", safetensors({"w": ("F32", [2, 3], f32)}))
    write("safetensors_fuzz", "two_with_metadata", safetensors(
        {"a": ("F16", [4], np.ones(4, "<f2").tobytes()),
         "b": ("I64", [1, 2], np.array([[7, -1]], "<i8").tobytes())},
        {"format": "pt", "step": "3"}))
    write("safetensors_fuzz", "bf16_bool_scalar", safetensors(
        {"x": ("BF16", [2], b"\x80\x3f\x00\x40"), "m": ("BOOL", [3], b"\x01\x00\x01"),
         "s": ("F64", [], np.array(2.5, "<f8").tobytes())}))
    write("safetensors_fuzz", "empty_dim", safetensors({"e": ("U8", [0, 5], b"")}))
    write("safetensors_fuzz", "hole_in_buffer",
          safetensors({"w": ("F32", [1], b"\0\0\0\0")}) + b"\0\0\0\0")


def npy(array, **kw):
    b = io.BytesIO()
    np.save(b, array, **kw)
    return b.getvalue()


def make_npy():
    write("npy_fuzz", "f32_2x3", npy(np.arange(6, dtype="<f4").reshape(2, 3)))
    write("npy_fuzz", "u8_images", npy(np.arange(32, dtype="u1").reshape(2, 1, 4, 4)))
    write("npy_fuzz", "i64_labels", npy(np.array([3, 1, 4], "<i8")))
    write("npy_fuzz", "bool", npy(np.array([True, False])))
    write("npy_fuzz", "f16_scalar", npy(np.array(1.5, "<f2")))
    write("npy_fuzz", "fortran_order", npy(np.asfortranarray(np.ones((2, 3), "<f4"))))
    write("npy_fuzz", "big_endian", npy(np.ones(2, ">f4")))
    write("npy_fuzz", "i32_v2_header", npy(np.ones(3, "<i4"), allow_pickle=False)
          .replace(b"\x93NUMPY\x01\x00", b"\x93NUMPY\x02\x00", 1))


def make_configs():
    sources = {
        0: ["configs/fmnist_student.yaml", "configs/fidelity/fmnist49_student.yaml",
            "deploy/k8s/base/config/student.yaml"],
        1: ["configs/fmnist_teacher_server.yaml", "deploy/k8s/base/config/teacher.yaml"],
        2: ["deploy/k8s/base/config/coordinator.yaml"],
        3: ["configs/fmnist_student_model.yaml", "configs/fmnist_teacher_model.yaml",
            "configs/fidelity/fmnist196_teacher_model.yaml"],
    }
    for selector, paths in sources.items():
        for p in paths:
            with open(os.path.join(ROOT, p), "rb") as f:
                text = f.read()
            name = p.replace("/", "_")
            write("config_fuzz", name, bytes([selector]) + text)
    write("config_fuzz", "anchors", b"\x03base: &b {depth: 2}\nother: *b\n")
    write("config_fuzz", "not_a_map", b"\x00- 1\n- 2\n")


def protos(tmp):
    subprocess.run(["protoc", "--proto_path", os.path.join(ROOT, "proto"),
                    "--python_out", tmp, "maskedkd/v1/teacher.proto",
                    "maskedkd/v1/coordinator.proto"], check=True)
    sys.path.insert(0, tmp)
    from maskedkd.v1 import coordinator_pb2, teacher_pb2
    return teacher_pb2, coordinator_pb2


def make_distill(pb):
    # The fuzzer's teacher: 16x16 RGB, 4x4 patches (N = 16, patch dim 48).
    def req(b, k, dtype, kind=pb.PAYLOAD_KIND_KEPT_PATCHES, idx=None, **kw):
        r = pb.DistillRequest(job_id="job", micro_batch_id=1, micro_batch_size=b, kept_patches=k,
                              payload_kind=kind, payload_dtype=dtype, **kw)
        rows = idx if idx is not None else [list(range(k)) for _ in range(b)]
        r.kept_indices = np.array(rows, "<i4").tobytes()
        size = {pb.DTYPE_F32: 4, pb.DTYPE_F16: 2, pb.DTYPE_BF16: 2}.get(dtype, 4)
        n = b * (3 * 16 * 16 if kind == pb.PAYLOAD_KIND_IMAGES else k * 48)
        r.payload = bytes(n * size)
        return r.SerializeToString()
    write("distill_request_fuzz", "patches_f32", req(1, 2, pb.DTYPE_F32))
    write("distill_request_fuzz", "patches_f16", req(2, 3, pb.DTYPE_F16,
                                                     idx=[[0, 5, 15], [1, 2, 3]]))
    write("distill_request_fuzz", "patches_bf16", req(1, 16, pb.DTYPE_BF16, timeout_ms=100))
    write("distill_request_fuzz", "images_f32", req(1, 4, pb.DTYPE_F32, pb.PAYLOAD_KIND_IMAGES,
                                                    want_features=True, job_weight=2))
    write("distill_request_fuzz", "repeated_index", req(1, 2, pb.DTYPE_F32, idx=[[3, 3]]))


def make_coordinator(pb):
    def rec(op, msg):
        data = msg if isinstance(msg, bytes) else msg.SerializeToString()
        assert len(data) < 256
        return bytes([op, len(data)]) + data
    teacher = pb.TeacherInfo(address="10.0.0.1:50051", model_id="m", device="cpu",
                             capacity_tokens_per_s=1000.0)
    job = pb.JobInfo(job_id="j", model_id="m", weight=1.0, batch_size=64, kept_patches=25)
    timings = pb.JobTimings(step=3, steps=3, micro_batches=2, student_forward_s=0.1,
                            student_backward_s=0.2, teacher_round_trip_s=0.05,
                            teacher_compute_s=0.04, measured_step_s=0.4, images_per_s=150)
    seq = (rec(0, pb.RegisterTeacherRequest(info=teacher)) +
           rec(2, pb.RegisterJobRequest(info=job)) +
           rec(5, bytes(20)) +
           rec(3, pb.JobHeartbeatRequest(info=job, timings=timings)) +
           rec(1, pb.TeacherHeartbeatRequest(info=teacher, load=pb.TeacherLoad(
               queued=1, in_flight=2, tokens_per_s=500, healthy=True))))
    write("coordinator_fuzz", "join_and_plan", seq)
    write("coordinator_fuzz", "drain", seq + rec(4, b"10.0.0.1:50051") + rec(5, bytes(60)))
    write("coordinator_fuzz", "lease_expiry", seq + rec(5, bytes(255)) + rec(5, bytes(255)))
    # Addresses the service refuses: empty host, a newline or a space in the
    # host, a long host, ports out of range or signed; Drain of the same.
    bad = [":5000", "evil\nhost:5000", "a b:5000", "h" * 200 + ":1", "h:0", "h:70000",
           "h:+80", "h:", "nohost"]
    refused = b"".join(rec(0, pb.RegisterTeacherRequest(info=pb.TeacherInfo(
        address=a, model_id="m", device="cpu", capacity_tokens_per_s=1.0))) for a in bad[:4])
    write("coordinator_fuzz", "bad_addresses", seq + refused +
          b"".join(rec(4, a.encode()) for a in bad))


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    make_safetensors()
    make_npy()
    make_configs()
    with tempfile.TemporaryDirectory() as tmp:
        teacher_pb2, coordinator_pb2 = protos(tmp)
        make_distill(teacher_pb2)
        make_coordinator(coordinator_pb2)
    for target in sorted(os.listdir(OUT)):
        print(target, len(os.listdir(os.path.join(OUT, target))), "seeds")


if __name__ == "__main__":
    main()
