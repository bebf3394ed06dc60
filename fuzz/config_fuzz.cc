// libFuzzer target: the YAML config loaders. The first byte picks the
// loader (student, teacher server, coordinator, ViT model); the rest is the
// YAML text. Each must answer with a value or with kInvalidArgument, never
// crash, hang or throw (yaml-cpp throws on malformed text; the loaders
// must catch it).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/vit_config.h"
#include "coordinator/config.h"
#include "student_worker/train_config.h"
#include "teacher_server/server_config.h"

namespace {

template <typename T>
void Check(const absl::StatusOr<T>& r) {
  if (!r.ok() && r.status().code() != absl::StatusCode::kInvalidArgument &&
      r.status().code() != absl::StatusCode::kNotFound) {  // A path the text names.
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      Check(mkd::student::ParseTrainConfig(text, {}));
      break;
    case 1:
      Check(mkd::teacher::ParseTeacherServerConfig(text, {}));
      break;
    case 2:
      Check(mkd::coordinator::ParseCoordinatorConfig(text, {}));
      break;
    default:
      Check(mkd::ParseViTConfigYaml(text));
      break;
  }
  return 0;
}
