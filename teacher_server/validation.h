// Checks a DistillRequest before any of it is decoded or queued, so that a
// malformed micro-batch costs the server nothing and is answered
// INVALID_ARGUMENT with the first reason found. Torch-free.
#ifndef MKD_TEACHER_SERVER_VALIDATION_H_
#define MKD_TEACHER_SERVER_VALIDATION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "maskedkd/v1/teacher.pb.h"
#include "teacher_server/shared_region.h"

namespace mkd::teacher {

// What a request must fit: the teacher's geometry and the server's limits.
struct RequestLimits {
  int64_t num_patches = 0;  // N
  int64_t patch_dim = 0;    // C*p*p
  int64_t in_chans = 0;
  int64_t img_size = 0;
  int64_t max_images = 0;  // b per request
  int64_t num_classes = 0;
  int64_t max_job_id_bytes = 128;
};

// OK, or kInvalidArgument naming the field: job_id empty or too long;
// job_weight outside [0, 1000] (or NaN);
// batch outside [1, max_images]; kept outside [1, N]; kept_indices not
// b*k int32 values, an index outside [0, N) or repeated within a row;
// unknown payload kind or dtype; payload size not the shape's.
// Shared memory: payload_shm or logits_shm without a `region` (the
// stream's, if it has one), a range that is not the region's, not inside
// it, or not the size the shapes need; payload_shm with a non-empty
// payload or a kind other than kept patches; overlapping ranges.
absl::Status ValidateDistillRequest(const maskedkd::v1::DistillRequest& request,
                                    const RequestLimits& limits,
                                    const SharedRegion* region = nullptr);

// The payload's size in bytes as the request's shape and dtype say.
// REQUIRES: ValidateDistillRequest passed.
int64_t PayloadBytes(const maskedkd::v1::DistillRequest& request, const RequestLimits& limits);

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_VALIDATION_H_
