#include "teacher_server/validation.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/wire.h"

namespace mkd::teacher {
namespace {

using maskedkd::v1::DistillRequest;

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

absl::Status CheckIndices(const DistillRequest& r, int64_t num_patches) {
  const int64_t b = r.micro_batch_size(), k = r.kept_patches();
  const std::string& bytes = r.kept_indices();
  if (static_cast<int64_t>(bytes.size()) != b * k * 4) {
    return Bad("kept_indices", absl::StrCat(bytes.size(), " bytes, but [", b, ", ", k,
                                            "] int32 needs ", b * k * 4));
  }
  // One pass with a per-row stamp: O(b*k), no allocation per row.
  std::vector<int64_t> seen_in_row(num_patches, -1);
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      int32_t v;
      std::memcpy(&v, bytes.data() + 4 * (i * k + j), 4);
      if (v < 0 || v >= num_patches) {
        return Bad("kept_indices", absl::StrCat("index ", v, " at [", i, ", ", j,
                                                "] is outside [0, ", num_patches, ")"));
      }
      if (seen_in_row[v] == i) {
        return Bad("kept_indices", absl::StrCat("index ", v, " repeats in row ", i));
      }
      seen_in_row[v] = i;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateDistillRequest(const DistillRequest& r, const RequestLimits& limits,
                                    const SharedRegion* region) {
  if (r.job_id().empty()) return Bad("job_id", "is empty");
  if (static_cast<int64_t>(r.job_id().size()) > limits.max_job_id_bytes) {
    return Bad("job_id",
               absl::StrCat("is ", r.job_id().size(), " bytes; at most ", limits.max_job_id_bytes));
  }
  if (!(r.job_weight() >= 0 && r.job_weight() <= 1000)) {
    return Bad("job_weight", absl::StrCat(r.job_weight(), " is outside [0, 1000] (0 reads as 1)"));
  }
  if (r.micro_batch_size() < 1 || r.micro_batch_size() > limits.max_images) {
    return Bad("micro_batch_size",
               absl::StrCat(r.micro_batch_size(), " is outside [1, ", limits.max_images, "]"));
  }
  if (r.kept_patches() < 1 || r.kept_patches() > limits.num_patches) {
    return Bad("kept_patches", absl::StrCat(r.kept_patches(), " is outside [1, ",
                                            limits.num_patches, "] (the teacher's patch count)"));
  }
  absl::Status st = CheckIndices(r, limits.num_patches);
  if (!st.ok()) return st;
  const int64_t elem = proto::WireDTypeSize(r.payload_dtype());
  if (elem == 0) {
    return Bad("payload_dtype",
               absl::StrCat(proto::WireDTypeName(r.payload_dtype()), " is not fp32, fp16 or bf16"));
  }
  switch (r.payload_kind()) {
    case maskedkd::v1::PAYLOAD_KIND_UNSPECIFIED:
    case maskedkd::v1::PAYLOAD_KIND_KEPT_PATCHES:
    case maskedkd::v1::PAYLOAD_KIND_IMAGES:
      break;
    default:
      return Bad("payload_kind", absl::StrCat("unknown value ", r.payload_kind()));
  }
  const int64_t bytes = PayloadBytes(r, limits);
  if ((r.has_payload_shm() || r.has_logits_shm()) && region == nullptr) {
    return Bad(r.has_payload_shm() ? "payload_shm" : "logits_shm",
               "this stream has no shared-memory region (offer one when opening the stream)");
  }
  if (r.has_payload_shm()) {
    if (r.payload_kind() == maskedkd::v1::PAYLOAD_KIND_IMAGES) {
      return Bad("payload_shm", "carries kept patches only (payload_kind KEPT_PATCHES)");
    }
    if (!r.payload().empty()) {
      return Bad("payload", "must be empty when payload_shm holds the payload");
    }
    st = region->CheckRange(r.payload_shm(), bytes, "payload_shm");
    if (!st.ok()) return st;
  } else if (static_cast<int64_t>(r.payload().size()) != bytes) {
    return Bad("payload",
               absl::StrCat(r.payload().size(), " bytes, but ", bytes / elem, " ",
                            proto::WireDTypeName(r.payload_dtype()), " values need ", bytes));
  }
  if (r.has_logits_shm()) {
    st = region->CheckRange(r.logits_shm(), int64_t{r.micro_batch_size()} * limits.num_classes * 4,
                            "logits_shm");
    if (!st.ok()) return st;
    if (r.has_payload_shm() && r.logits_shm().offset() < r.payload_shm().offset() + bytes &&
        r.payload_shm().offset() < r.logits_shm().offset() + r.logits_shm().size()) {
      return Bad("logits_shm", "overlaps payload_shm");
    }
  }
  return absl::OkStatus();
}

int64_t PayloadBytes(const maskedkd::v1::DistillRequest& r, const RequestLimits& limits) {
  const int64_t per_image = r.payload_kind() == maskedkd::v1::PAYLOAD_KIND_IMAGES
                                ? limits.in_chans * limits.img_size * limits.img_size
                                : int64_t{r.kept_patches()} * limits.patch_dim;
  return int64_t{r.micro_batch_size()} * per_image * proto::WireDTypeSize(r.payload_dtype());
}

}  // namespace mkd::teacher
