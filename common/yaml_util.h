// Typed reads of YAML scalars for config loaders, with errors that name the
// (dotted) key. Header-only; yaml-cpp stays out of other headers.
#ifndef MKD_COMMON_YAML_UTIL_H_
#define MKD_COMMON_YAML_UTIL_H_

#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "yaml-cpp/yaml.h"

namespace mkd {

inline absl::Status ConfigKeyError(absl::string_view what, absl::string_view key,
                                   absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(what, " key '", key, "': ", why));
}

// node.as<T>() or kInvalidArgument "<what> key '<key>': expected <type_name>, got '...'".
template <typename T>
absl::StatusOr<T> YamlScalar(const YAML::Node& node, absl::string_view what, absl::string_view key,
                             absl::string_view type_name) {
  // `--set key=` (and `key:` in a file) reads as an empty string.
  if constexpr (std::is_same_v<T, std::string>) {
    if (node.IsNull()) return std::string();
  }
  if (!node.IsScalar()) return ConfigKeyError(what, key, absl::StrCat("expected ", type_name));
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    return ConfigKeyError(what, key,
                          absl::StrCat("expected ", type_name, ", got '", node.Scalar(), "'"));
  }
}

template <typename T>
absl::StatusOr<std::vector<T>> YamlList(const YAML::Node& node, absl::string_view what,
                                        absl::string_view key, absl::string_view type_name) {
  if (!node.IsSequence()) {
    return ConfigKeyError(what, key, absl::StrCat("expected a list of ", type_name));
  }
  std::vector<T> out;
  for (const auto& item : node) {
    auto v = YamlScalar<T>(item, what, key, type_name);
    if (!v.ok()) return v.status();
    out.push_back(*v);
  }
  return out;
}

}  // namespace mkd

#endif  // MKD_COMMON_YAML_UTIL_H_
