// Flat views of YAML config files: nested mappings become dotted keys
// ("optim.lr"), and `key=value` overrides (from --set flags) are applied on
// top. Every component's config loader starts here, so they all treat
// nesting, overrides and errors the same way.
#ifndef MKD_COMMON_CONFIG_YAML_H_
#define MKD_COMMON_CONFIG_YAML_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/vit_config.h"
#include "yaml-cpp/yaml.h"

namespace mkd {

// Parses `yaml_text` (a mapping, or empty) into dotted keys -> nodes, then
// applies each "key=value" of `overrides` (value parsed as YAML). Keys named
// in `whole` keep their subtree as one node (e.g. an inline model config);
// an override "model.depth=2" edits inside such a subtree, turning a scalar
// there into {preset: <scalar>, depth: 2}. kInvalidArgument on bad YAML or
// a malformed override.
absl::StatusOr<std::map<std::string, YAML::Node>> FlattenConfig(
    const std::string& yaml_text, const std::vector<std::string>& overrides,
    const std::set<std::string>& whole = {});

// The model a config's `key` names: a preset name or a model YAML path (a
// scalar, copied to *spec), or an inline mapping (*spec = "inline").
// kInvalidArgument naming `what` and `key` when absent or invalid.
absl::StatusOr<ViTConfig> ModelFromConfigNode(const YAML::Node& node, const std::string& what,
                                              const std::string& key, std::string* spec);

}  // namespace mkd

#endif  // MKD_COMMON_CONFIG_YAML_H_
