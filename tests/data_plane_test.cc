// The shared-memory data plane with real processes: an mkd-teacher, and a
// student that is either this test (RemoteTeacher, or a raw gRPC stream)
// or an mkd-student. The shm plane answers the same logits as gRPC bytes,
// bit for bit; a bad region, offset or size is refused and the stream
// carries on; a teacher without shared memory is refused clearly when shm
// is insisted on, and used over bytes under auto; a SIGKILLed student
// leaves nothing in /dev/shm and the teacher lets its region go.
// (A SIGKILLed shm teacher failing over: pool_test.)
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/masking.h"
#include "maskedkd/v1/teacher.grpc.pb.h"
#include "proto/shared_memory.h"
#include "proto/tensor_codec.h"
#include "teacher_client/remote_teacher.h"
#include "tests/pool_util.h"

namespace mkd::pool_test {
namespace {

namespace v1 = ::maskedkd::v1;
using client::MakeRemoteTeacher;
using client::RemoteTeacherOptions;

constexpr int kClasses = 10;

class DataPlaneTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { WriteTeacher("dp", 2, 32, 5); }

  // A standalone mkd-teacher (no pool) with `sets`.
  static Proc StartStandalone(const std::string& name, const std::vector<std::string>& sets = {}) {
    Proc p;
    std::vector<std::string> args = {"--config", Tmp("dp_server.yaml")};
    for (const auto& s : sets) args.insert(args.end(), {"--set", s});
    p.process = std::make_unique<ChildProcess>("mkd-teacher", args, Tmp(name));
    auto line = p.process->WaitForLine("] serving ");
    EXPECT_TRUE(line.has_value()) << p.process->err();
    if (!line) return p;
    p.port = NumberAfter(*line, " on port ");
    p.metrics_port = NumberAfter(*line, "metrics port ");
    return p;
  }

  static std::unique_ptr<client::Teacher> Client(const Proc& t, DataPlaneKind plane,
                                                 const std::string& job) {
    RemoteTeacherOptions o;
    o.address = t.address();
    o.tls.insecure = true;
    o.job_id = job;
    o.wire_dtype = DType::kF16;
    o.data_plane = plane;
    o.shm_region_bytes = 1 << 20;
    o.timeout = o.reconnect_timeout = absl::Seconds(20);
    auto r = MakeRemoteTeacher(o);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : nullptr;
  }

  // Fashion-MNIST-shaped normalised images and kept indices (8 of 16).
  static std::pair<torch::Tensor, torch::Tensor> MicroBatch(int64_t b, uint64_t seed) {
    torch::manual_seed(seed);
    torch::Tensor images = torch::randn({b, 1, 28, 28});
    torch::Tensor idx =
        torch::rand({b, 16}).argsort(/*dim=*/1, /*descending=*/false).narrow(1, 0, 8).contiguous();
    return {images, idx};
  }
};

TEST_F(DataPlaneTest, SharedMemoryAnswersTheSameLogitsAsBytesBitForBit) {
  Proc t = StartStandalone("same_t");
  auto bytes = Client(t, DataPlaneKind::kGrpc, "bytes-job");
  auto shm = Client(t, DataPlaneKind::kShm, "shm-job");  // Another job: no shared cache.
  ASSERT_TRUE(bytes && shm);
  for (uint64_t i = 0; i < 6; ++i) {
    auto [images, idx] = MicroBatch(3 + i, 100 + i);
    // One at a time, so each is a forward pass of its own on both planes.
    auto a = client::AwaitLogits(bytes->SubmitLogits(images, idx), absl::Seconds(30));
    auto b = client::AwaitLogits(shm->SubmitLogits(images, idx), absl::Seconds(30));
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_EQ(a->sizes(), (std::vector<int64_t>{3 + static_cast<int64_t>(i), kClasses}));
    EXPECT_TRUE(torch::equal(*a, *b))
        << "micro-batch " << i << ": max |diff| " << (*a - *b).abs().max().item<float>();
  }
  const std::string metrics = Scrape(t.metrics_port);
  EXPECT_EQ(MetricValue(metrics, "mkd_teacher_streams_total{data_plane=\"shm\"}"), 1) << metrics;
  EXPECT_EQ(MetricValue(metrics, "mkd_teacher_streams_total{data_plane=\"grpc\"}"), 1);
  EXPECT_EQ(MetricValue(metrics, "mkd_teacher_shm_regions"), 1);
  EXPECT_EQ(Promtool(metrics, "dp_teacher"), "");
  shm.reset();  // Its stream ends: the teacher lets the region go.
  EXPECT_TRUE(
      WaitFor([&] { return MetricValue(Scrape(t.metrics_port), "mkd_teacher_shm_regions") == 0; }));
}

// A raw stream offering a region of its own making (it keeps the
// descriptor, so a test can shrink the region under the teacher), sending
// hand-made requests.
class RawStream {
 public:
  static constexpr int64_t kRegionBytes = 1 << 16;

  RawStream(const Proc& t, bool offer_region) {
    channel_ = grpc::CreateChannel(t.address(), grpc::InsecureChannelCredentials());
    stub_ = v1::TeacherService::NewStub(channel_);
    if (offer_region) {
      name_ = absl::StrCat(kShmRegionPrefix, "raw-", getpid(), "-", counter_++);
      fd_ = shm_open(name_.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
      EXPECT_GE(fd_, 0) << std::strerror(errno);
      EXPECT_EQ(ftruncate(fd_, kRegionBytes), 0);
      data_ = static_cast<char*>(
          mmap(nullptr, kRegionBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0));
      EXPECT_NE(data_, MAP_FAILED);
      ctx_.AddMetadata(kShmRegionKey, name_);
      ctx_.AddMetadata(kShmBytesKey, std::to_string(kRegionBytes));
    }
    stream_ = stub_->Distill(&ctx_);
    if (offer_region) {
      stream_->WaitForInitialMetadata();
      auto md = ctx_.GetServerInitialMetadata();
      auto it = md.find(kDataPlaneKey);
      plane_ = it == md.end() ? "" : std::string(it->second.data(), it->second.size());
    }
  }
  ~RawStream() {
    stream_->WritesDone();
    stream_->Finish();
    if (fd_ >= 0) {
      munmap(data_, kRegionBytes);
      close(fd_);
      shm_unlink(name_.c_str());  // Normally gone already: the teacher unlinked it.
    }
  }
  const std::string& plane() const { return plane_; }
  const std::string& name() const { return name_; }
  char* data() { return data_; }
  // Shrinks the region (as a misbehaving student could).
  void Shrink(int64_t bytes) { EXPECT_EQ(ftruncate(fd_, bytes), 0); }
  v1::DistillResponse Send(const v1::DistillRequest& r) {
    v1::DistillResponse out;
    EXPECT_TRUE(stream_->Write(r));
    EXPECT_TRUE(stream_->Read(&out));
    return out;
  }

 private:
  static inline int counter_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TeacherService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::string name_;
  int fd_ = -1;
  char* data_ = nullptr;
  std::unique_ptr<grpc::ClientReaderWriter<v1::DistillRequest, v1::DistillResponse>> stream_;
  std::string plane_;
};

TEST_F(DataPlaneTest, BadRegionsOffsetsAndSizesAreRefusedAndTheStreamCarriesOn) {
  Proc t = StartStandalone("bad_t");
  RawStream s(t, /*offer_region=*/true);
  ASSERT_EQ(s.plane(), "shm");
  // Named tensors, not a structured binding: the lambdas below use them.
  const auto made = MicroBatch(2, 7);
  const torch::Tensor images = made.first, idx = made.second;
  const std::string payload = proto::EncodeFloats(CutPatches(images, idx, 7), v1::DTYPE_F32);
  const uint64_t logits_at = 4096, logits_bytes = 2 * kClasses * 4;
  std::memcpy(s.data(), payload.data(), payload.size());
  uint64_t id = 1;
  auto request = [&](uint64_t offset, uint64_t size) {
    v1::DistillRequest r;
    r.set_job_id("raw");
    r.set_micro_batch_id(id++);
    r.set_micro_batch_size(2);
    r.set_kept_patches(8);
    r.set_kept_indices(proto::EncodeIndices(idx));
    r.set_payload_dtype(v1::DTYPE_F32);
    r.mutable_payload_shm()->set_region(s.name());
    r.mutable_payload_shm()->set_offset(offset);
    r.mutable_payload_shm()->set_size(size);
    r.mutable_logits_shm()->set_region(s.name());
    r.mutable_logits_shm()->set_offset(logits_at);
    r.mutable_logits_shm()->set_size(logits_bytes);
    return r;
  };
  auto expect_refused = [&](const v1::DistillRequest& r, const std::string& says) {
    v1::DistillResponse a = s.Send(r);
    EXPECT_EQ(a.code(), grpc::StatusCode::INVALID_ARGUMENT) << says;
    EXPECT_NE(a.message().find(says), std::string::npos) << a.message();
  };
  const uint64_t size = payload.size();
  expect_refused(request(RawStream::kRegionBytes, size),
                 "payload_shm: [65536, +");  // Past the end.
  expect_refused(request(RawStream::kRegionBytes - size / 2, size), "outside the region");
  expect_refused(request(~uint64_t{0} - 8, size), "outside the region");  // Wraps 2^64.
  expect_refused(request(0, size - 4), "the shapes need");
  v1::DistillRequest other = request(0, size);
  other.mutable_payload_shm()->set_region(absl::StrCat(kShmRegionPrefix, "someone-else"));
  expect_refused(other, "not this stream's");
  v1::DistillRequest overlap = request(0, size);
  overlap.mutable_logits_shm()->set_offset(64);
  expect_refused(overlap, "overlaps payload_shm");
  v1::DistillRequest both = request(0, size);
  both.set_payload(payload);
  expect_refused(both, "must be empty");
  v1::DistillRequest small_logits = request(0, size);
  small_logits.mutable_logits_shm()->set_size(logits_bytes - 4);
  expect_refused(small_logits, "logits_shm.size");
  // The stream and the server carry on: a good request is answered, its
  // logits in the region, equal to the same request's over bytes.
  v1::DistillResponse good = s.Send(request(0, size));
  ASSERT_EQ(good.code(), 0) << good.message();
  EXPECT_TRUE(good.logits_in_shm());
  EXPECT_TRUE(good.logits().empty());
  torch::Tensor from_region = torch::empty({2, kClasses});
  std::memcpy(from_region.data_ptr(), s.data() + logits_at, logits_bytes);
  RawStream plain(t, /*offer_region=*/false);
  v1::DistillRequest as_bytes = request(0, size);
  as_bytes.set_job_id("raw-bytes");
  as_bytes.clear_payload_shm();
  as_bytes.clear_logits_shm();
  as_bytes.set_payload(payload);
  v1::DistillResponse bytes_answer = plain.Send(as_bytes);
  ASSERT_EQ(bytes_answer.code(), 0) << bytes_answer.message();
  auto expected = proto::DecodeFloats(bytes_answer.logits(), bytes_answer.logits_dtype(),
                                      {2, kClasses}, "logits");
  ASSERT_TRUE(expected.ok());
  EXPECT_TRUE(torch::equal(from_region, *expected));
  // A region shrunk under the teacher: the range it announced no longer
  // holds the payload. An error for that micro-batch, no crash (the server
  // checks the size before it reads); what is still there is served.
  s.Shrink(3200);  // The payload at 0 (3136 bytes) still fits; the logits at 4096 do not.
  v1::DistillResponse shrunk = s.Send(request(4096 + 1024, size));
  EXPECT_EQ(shrunk.code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(shrunk.message().find("did it shrink"), std::string::npos) << shrunk.message();
  // A new id: computed afresh (the cache answers repeated ids only).
  v1::DistillResponse unwritable = s.Send(request(0, size));
  EXPECT_EQ(unwritable.code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(unwritable.message().find("logits_shm"), std::string::npos) << unwritable.message();
  // A stream that offered no region cannot name one.
  v1::DistillRequest no_region = request(0, size);
  no_region.set_job_id("raw-bytes");
  v1::DistillResponse refused = plain.Send(no_region);
  EXPECT_EQ(refused.code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.message().find("this stream has no shared-memory region"), std::string::npos)
      << refused.message();
}

TEST_F(DataPlaneTest, ATeacherWithoutSharedMemoryIsRefusedUnderShmAndUsedUnderAuto) {
  Proc t = StartStandalone("off_t", {"limits.max_shm_region_mb=0"});
  auto [images, idx] = MicroBatch(2, 9);
  RemoteTeacherOptions o;
  o.address = t.address();
  o.tls.insecure = true;
  o.job_id = "insists";
  o.data_plane = DataPlaneKind::kShm;
  o.shm_region_bytes = 1 << 20;
  o.timeout = o.reconnect_timeout = absl::Seconds(2);
  auto insists = MakeRemoteTeacher(o);
  ASSERT_TRUE(insists.ok()) << insists.status();
  auto refused = client::AwaitLogits((*insists)->SubmitLogits(images, idx), absl::Seconds(30));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("cannot use shared memory"), std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("max_shm_region_mb: 0"), std::string::npos)
      << refused.status();
  auto flexible = Client(t, DataPlaneKind::kAuto, "flexible");
  ASSERT_NE(flexible, nullptr);
  auto logits = client::AwaitLogits(flexible->SubmitLogits(images, idx), absl::Seconds(30));
  EXPECT_TRUE(logits.ok()) << logits.status();
  const std::string metrics = Scrape(t.metrics_port);
  EXPECT_EQ(MetricValue(metrics, "mkd_teacher_streams_total{data_plane=\"shm\"}"), 0);
  EXPECT_GE(MetricValue(metrics, "mkd_teacher_streams_total{data_plane=\"grpc\"}"), 1);
}

// Entries of /dev/shm that mkd-student `pid` made.
std::vector<std::string> ShmEntriesOf(pid_t pid) {
  std::vector<std::string> out;
  const std::string prefix = absl::StrCat(std::string(kShmRegionPrefix).substr(1), pid, "-");
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0) out.push_back(name);
  }
  return out;
}

TEST_F(DataPlaneTest, ASigkilledStudentLeavesNothingInDevShm) {
  Proc t = StartStandalone("kill_t");
  auto s = StartStudent("dp", "dp_killed",
                        {"distill.teacher_address=" + t.address(), "distill.data_plane=shm",
                         "distill.shm_region_mb=4", "distill.micro_batches=4"});
  ASSERT_TRUE(WaitFor([] { return TrainLines("dp_killed").size() >= 5; })) << s->err();
  EXPECT_EQ(MetricValue(Scrape(t.metrics_port), "mkd_teacher_shm_regions"), 1);
  // The names go as soon as the teacher has the regions open.
  EXPECT_TRUE(ShmEntriesOf(s->pid()).empty());
  const pid_t pid = s->pid();
  s->Signal(SIGKILL);
  EXPECT_EQ(s->Wait(), 128 + SIGKILL);
  // The teacher notices the stream's end and closes the region: its memory
  // goes with the last reference, and /dev/shm has nothing of the student.
  EXPECT_TRUE(WaitFor([&] {
    const std::string m = Scrape(t.metrics_port);
    return MetricValue(m, "mkd_teacher_shm_regions") == 0 &&
           MetricValue(m, "mkd_teacher_open_streams") == 0;
  })) << Scrape(t.metrics_port);
  EXPECT_TRUE(ShmEntriesOf(pid).empty());
  EXPECT_EQ(MetricValue(Scrape(t.metrics_port), "mkd_teacher_streams_total{data_plane=\"grpc\"}"),
            0);
}

}  // namespace
}  // namespace mkd::pool_test
