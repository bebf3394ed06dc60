// Test helper: nested JSON number lists (tests/golden/losses.json) as
// float64 tensors. Header-only; used by unit tests only.
#ifndef MKD_COMMON_GOLDEN_JSON_H_
#define MKD_COMMON_GOLDEN_JSON_H_

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/file_util.h"

namespace mkd {

inline void FlattenJson(const nlohmann::json& j, size_t depth, std::vector<int64_t>* shape,
                        std::vector<double>* values) {
  if (!j.is_array()) {
    values->push_back(j.get<double>());
    return;
  }
  if (shape->size() == depth) shape->push_back(static_cast<int64_t>(j.size()));
  for (const auto& item : j) FlattenJson(item, depth + 1, shape, values);
}

inline torch::Tensor JsonTensor(const nlohmann::json& j) {
  std::vector<int64_t> shape;
  std::vector<double> values;
  FlattenJson(j, 0, &shape, &values);
  return torch::tensor(values, torch::kFloat64).reshape(shape);
}

// The golden losses/resampling file; aborts the test binary if unreadable.
inline nlohmann::json LoadGoldenJson() {
  auto text = ReadFile("tests/golden/losses.json");
  TORCH_CHECK(text.ok(), "cannot read tests/golden/losses.json (run from the source root)");
  return nlohmann::json::parse(*text);
}

}  // namespace mkd

#endif  // MKD_COMMON_GOLDEN_JSON_H_
