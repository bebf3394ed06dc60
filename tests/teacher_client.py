"""An independent client for mkd-teacher, on Debian's python3-grpcio.

Usage: teacher_client.py PORT PYGEN_DIR DATA_PREFIX
PYGEN_DIR holds protoc's Python output for proto/maskedkd/v1/teacher.proto;
DATA_PREFIX + {patches,idx,logits}.npy are the inputs and expected logits.
Checks ModelInfo, correct logits over Distill, and that malformed requests
get INVALID_ARGUMENT while another stream keeps being served. Exits non-zero
with a reason on any failure.
"""
import sys
import threading

import grpc
import numpy as np

port, pygen, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, pygen)
from maskedkd.v1 import teacher_pb2 as pb  # noqa: E402

INVALID_ARGUMENT = 3
channel = grpc.insecure_channel(f"127.0.0.1:{port}")
grpc.channel_ready_future(channel).result(timeout=30)
info = channel.unary_unary(
    "/maskedkd.v1.TeacherService/GetModelInfo",
    request_serializer=pb.ModelInfoRequest.SerializeToString,
    response_deserializer=pb.ModelInfo.FromString)(pb.ModelInfoRequest(), timeout=30)
assert (info.img_size, info.patch_size, info.num_classes) == (28, 7, 10), info
distill = channel.stream_stream(
    "/maskedkd.v1.TeacherService/Distill",
    request_serializer=pb.DistillRequest.SerializeToString,
    response_deserializer=pb.DistillResponse.FromString)

patches = np.load(prefix + "patches.npy").astype("<f4")
idx = np.load(prefix + "idx.npy").astype("<i4")
expected = np.load(prefix + "logits.npy")
b, k = idx.shape


def request(mb_id, **overrides):
    fields = dict(job_id="py", micro_batch_id=mb_id, micro_batch_size=b, kept_patches=k,
                  kept_indices=idx.tobytes(), payload_kind=pb.PAYLOAD_KIND_KEPT_PATCHES,
                  payload_dtype=pb.DTYPE_F32, payload=patches.tobytes())
    fields.update(overrides)
    return pb.DistillRequest(**fields)


def logits_of(resp):
    return np.frombuffer(resp.logits, dtype="<f4").reshape(tuple(resp.logits_shape))


bad_idx = idx.copy()
bad_idx[0, 1] = bad_idx[0, 0]
malformed = [
    request(101, kept_indices=bad_idx.tobytes()),           # repeated index
    request(102, payload=patches.tobytes()[:-4]),           # short payload
    request(103, kept_patches=17),                           # k > N
    request(104, payload_dtype=pb.DTYPE_UNSPECIFIED),       # no dtype
    request(105, job_id=""),                                # no job
]
good_other = {}


def other_stream():  # Served while the malformed stream is being answered.
    for resp in distill(iter([request(201, job_id="py-other"), request(202, job_id="py-other")]),
                        timeout=60):
        good_other[resp.micro_batch_id] = resp


t = threading.Thread(target=other_stream)
t.start()
answers = {r.micro_batch_id: r for r in distill(iter(malformed + [request(1)]), timeout=60)}
t.join(timeout=60)

failures = []
for r in malformed:
    a = answers.get(r.micro_batch_id)
    if a is None or a.code != INVALID_ARGUMENT or not a.message:
        failures.append(f"micro-batch {r.micro_batch_id}: expected INVALID_ARGUMENT, got {a}")
ok = answers.get(1)
if ok is None or ok.code != 0:
    failures.append(f"valid micro-batch after malformed ones failed: {ok}")
elif not np.allclose(logits_of(ok), expected, rtol=1e-5, atol=1e-5):
    failures.append(f"logits differ: max |diff| {np.abs(logits_of(ok) - expected).max()}")
for mb in (201, 202):
    if mb not in good_other or good_other[mb].code != 0 or \
            not np.allclose(logits_of(good_other[mb]), expected, rtol=1e-5, atol=1e-5):
        failures.append(f"other stream's micro-batch {mb}: {good_other.get(mb)}")
if failures:
    print("\n".join(failures))
    sys.exit(1)
print("python client: ok (" + ", ".join(
    f"{r.micro_batch_id}: {answers[r.micro_batch_id].message}" for r in malformed[:2]) + ")")
