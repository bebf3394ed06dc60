#include "teacher_server/validation.h"

#include <gtest/gtest.h>

#include <cstring>

namespace mkd::teacher {
namespace {

RequestLimits Limits() {
  RequestLimits l;
  l.num_patches = 16;
  l.patch_dim = 3 * 4 * 4;
  l.in_chans = 3;
  l.img_size = 16;
  l.max_images = 8;
  return l;
}

std::string Indices(const std::vector<int32_t>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

maskedkd::v1::DistillRequest Good() {
  maskedkd::v1::DistillRequest r;
  r.set_job_id("job");
  r.set_micro_batch_id(1);
  r.set_micro_batch_size(2);
  r.set_kept_patches(3);
  r.set_kept_indices(Indices({0, 5, 15, 1, 2, 3}));
  r.set_payload_dtype(maskedkd::v1::DTYPE_F16);
  r.set_payload(std::string(2 * 3 * 48 * 2, '\0'));
  return r;
}

void ExpectBad(const maskedkd::v1::DistillRequest& r, const std::string& needle) {
  absl::Status st = ValidateDistillRequest(r, Limits());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << needle;
  EXPECT_NE(st.message().find(needle), std::string::npos) << st;
}

TEST(Validation, AcceptsAWellFormedRequest) {
  EXPECT_TRUE(ValidateDistillRequest(Good(), Limits()).ok());
  auto images = Good();
  images.set_payload_kind(maskedkd::v1::PAYLOAD_KIND_IMAGES);
  images.set_payload_dtype(maskedkd::v1::DTYPE_F32);
  images.set_payload(std::string(2 * 3 * 16 * 16 * 4, '\0'));
  EXPECT_TRUE(ValidateDistillRequest(images, Limits()).ok());
}

TEST(Validation, NamesEachBadField) {
  auto r = Good();
  r.clear_job_id();
  ExpectBad(r, "job_id: is empty");
  r = Good();
  r.set_micro_batch_size(0);
  ExpectBad(r, "micro_batch_size: 0 is outside [1, 8]");
  r = Good();
  r.set_micro_batch_size(9);
  ExpectBad(r, "micro_batch_size: 9");
  r = Good();
  r.set_kept_patches(17);
  ExpectBad(r, "kept_patches: 17 is outside [1, 16]");
  r = Good();
  r.set_kept_indices(Indices({0, 5, 15, 1, 2}));
  ExpectBad(r, "kept_indices: 20 bytes");
  r = Good();
  r.set_kept_indices(Indices({0, 5, 16, 1, 2, 3}));
  ExpectBad(r, "index 16 at [0, 2] is outside [0, 16)");
  r = Good();
  r.set_kept_indices(Indices({0, 5, 15, 1, 2, -1}));
  ExpectBad(r, "index -1");
  r = Good();
  r.set_kept_indices(Indices({0, 5, 15, 2, 1, 2}));
  ExpectBad(r, "index 2 repeats in row 1");
  r = Good();
  r.set_payload_dtype(maskedkd::v1::DTYPE_UNSPECIFIED);
  ExpectBad(r, "payload_dtype");
  r = Good();
  r.set_payload_kind(static_cast<maskedkd::v1::PayloadKind>(9));
  ExpectBad(r, "payload_kind: unknown value 9");
  r = Good();
  r.set_payload(std::string(10, '\0'));
  ExpectBad(r, "payload: 10 bytes, but 288 fp16 values need 576");
}

}  // namespace
}  // namespace mkd::teacher
