#include "teacher_client/data_plane.h"

#include <atomic>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace mkd::client {
namespace {

namespace v1 = ::maskedkd::v1;

// The header with the indices; the caller adds the payload.
v1::DistillRequest Header(const OutgoingMicroBatch& mb) {
  if (mb.wait_ready) mb.wait_ready();
  v1::DistillRequest r = mb.header;
  r.set_kept_indices(mb.indices, static_cast<size_t>(mb.indices_bytes));
  return r;
}

v1::DistillRequest WithPayload(const OutgoingMicroBatch& mb) {
  v1::DistillRequest r = Header(mb);
  r.set_payload(mb.payload, static_cast<size_t>(mb.payload_bytes));
  return r;
}

class GrpcPlane final : public DataPlane {
 public:
  DataPlaneKind kind() const override { return DataPlaneKind::kGrpc; }
  v1::DistillRequest Encode(const OutgoingMicroBatch& mb) override { return WithPayload(mb); }
  void Decode(v1::DistillResponse*) override {}
};

class ShmPlane final : public DataPlane {
 public:
  explicit ShmPlane(std::unique_ptr<ShmRegion> region)
      : region_(std::move(region)), ranges_(region_->size()) {}

  DataPlaneKind kind() const override { return DataPlaneKind::kShm; }

  v1::DistillRequest Encode(const OutgoingMicroBatch& mb) override {
    const uint64_t id = mb.header.micro_batch_id();
    // [payload | logits], the logits 64-byte aligned.
    const int64_t logits_at = (mb.payload_bytes + 63) / 64 * 64;
    std::optional<int64_t> offset;
    {
      MutexLock lock(&mu_);
      offset = ranges_.Allocate(logits_at + mb.logits_bytes);
      if (offset) held_[id] = Held{*offset, *offset + logits_at, mb.logits_bytes};
    }
    if (!offset) {  // Full: this one goes in the message.
      ++fallbacks_;
      return WithPayload(mb);
    }
    // From the device straight into a page-locked region (DMA), else a
    // copy from the payload's host memory.
    char* dst = region_->data() + *offset;
    const bool direct = region_->page_locked() && mb.copy_payload_into && mb.copy_payload_into(dst);
    v1::DistillRequest r = Header(mb);
    if (!direct) std::memcpy(dst, mb.payload, static_cast<size_t>(mb.payload_bytes));
    v1::SharedMemoryRange* in = r.mutable_payload_shm();
    in->set_region(region_->name());
    in->set_offset(static_cast<uint64_t>(*offset));
    in->set_size(static_cast<uint64_t>(mb.payload_bytes));
    v1::SharedMemoryRange* out = r.mutable_logits_shm();
    out->set_region(region_->name());
    out->set_offset(static_cast<uint64_t>(*offset + logits_at));
    out->set_size(static_cast<uint64_t>(mb.logits_bytes));
    return r;
  }

  void Decode(v1::DistillResponse* r) override {
    Held held;
    {
      MutexLock lock(&mu_);
      auto it = held_.find(r->micro_batch_id());
      if (it == held_.end()) return;  // Sent as bytes.
      held = it->second;
      held_.erase(it);
    }
    if (r->logits_in_shm()) {
      r->set_logits(region_->data() + held.logits, static_cast<size_t>(held.logits_bytes));
      r->set_logits_in_shm(false);
    }
    MutexLock lock(&mu_);
    ranges_.Free(held.start);
  }

  int64_t fallbacks() const override { return fallbacks_.load(); }

 private:
  struct Held {
    int64_t start = 0, logits = 0, logits_bytes = 0;
  };
  const std::unique_ptr<ShmRegion> region_;
  Mutex mu_;
  RangeAllocator ranges_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Held> held_ ABSL_GUARDED_BY(mu_);  // By micro-batch id.
  std::atomic<int64_t> fallbacks_{0};
};

}  // namespace

int64_t OutgoingMicroBatch::MessageBytes() const {
  // The header's own size, the payload, and its field tag and length.
  return static_cast<int64_t>(header.ByteSizeLong()) + payload_bytes + indices_bytes + 32;
}

std::unique_ptr<DataPlane> MakeGrpcPlane() { return std::make_unique<GrpcPlane>(); }

std::unique_ptr<DataPlane> MakeShmPlane(std::unique_ptr<ShmRegion> region) {
  return std::make_unique<ShmPlane>(std::move(region));
}

}  // namespace mkd::client
