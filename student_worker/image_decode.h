// JPEG (libjpeg-turbo) and PNG (libpng) decoding to 8-bit images.
#ifndef MKD_STUDENT_WORKER_IMAGE_DECODE_H_
#define MKD_STUDENT_WORKER_IMAGE_DECODE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "student_worker/dataset.h"

namespace mkd::student {

// Decodes JPEG or PNG bytes (sniffed from the magic) into RGB (3 channels)
// or grey (1 channel, if the file is grey) CHW pixels; `label` is left 0.
// kInvalidArgument for an unknown format, kDataLoss for a corrupt image.
absl::StatusOr<Example> DecodeImage(absl::string_view bytes);

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_IMAGE_DECODE_H_
