// libFuzzer target: what a teacher does with a DistillRequest off the wire
// before it reaches the batcher: protobuf parsing, ValidateDistillRequest,
// then the tensor codec (indices, payload in each dtype, whole images cut
// to patches), exactly as TeacherServiceImpl::Decode does.
//
// The property beyond "no crash": a request the validator accepts always
// decodes, into the shapes the engine expects. The validator is the only
// thing between a client's bytes and the model.
#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "common/masking.h"
#include "fuzz/fuzz_check.h"
#include "proto/tensor_codec.h"
#include "teacher_server/result_cache.h"
#include "teacher_server/validation.h"

namespace {

namespace v1 = ::maskedkd::v1;

// A small teacher: 16x16 RGB images, 4x4 patches (N = 16).
constexpr int64_t kImg = 16, kPatch = 4, kChans = 3, kN = 16, kPatchDim = kChans * kPatch * kPatch;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool once = [] {
    torch::set_num_threads(1);
    return true;
  }();
  (void)once;
  v1::DistillRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  mkd::teacher::RequestLimits limits;
  limits.num_patches = kN;
  limits.patch_dim = kPatchDim;
  limits.in_chans = kChans;
  limits.img_size = kImg;
  limits.max_images = 8;
  limits.num_classes = 10;
  const absl::Status valid = mkd::teacher::ValidateDistillRequest(request, limits);
  if (!valid.ok()) {
    Require(valid.code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  (void)mkd::teacher::RequestDigest(request, request.payload());
  const int64_t b = request.micro_batch_size(), k = request.kept_patches();
  absl::StatusOr<torch::Tensor> idx = mkd::proto::DecodeIndices(request.kept_indices(), b, k);
  Require(idx.ok());
  Require(idx->size(0) == b && idx->size(1) == k);
  Require(idx->min().item<int64_t>() >= 0 && idx->max().item<int64_t>() < kN);
  if (request.payload_kind() == v1::PAYLOAD_KIND_IMAGES) {
    absl::StatusOr<torch::Tensor> images = mkd::proto::DecodeFloats(
        request.payload(), request.payload_dtype(), {b, kChans, kImg, kImg}, "payload");
    Require(images.ok());
    const torch::Tensor patches = mkd::CutPatches(*images, *idx, kPatch);
    Require(patches.sizes() == torch::IntArrayRef({b, k, kPatchDim}));
  } else {
    absl::StatusOr<torch::Tensor> patches = mkd::proto::DecodeWireFloats(
        request.payload(), request.payload_dtype(), {b, k, kPatchDim}, "payload");
    Require(patches.ok());
    Require(patches->sizes() == torch::IntArrayRef({b, k, kPatchDim}));
  }
  return 0;
}
