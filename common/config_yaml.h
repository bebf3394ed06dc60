// Flat views of YAML config files: nested mappings become dotted keys
// ("optim.lr"), and `key=value` overrides (from --set flags) are applied on
// top. Every component's config loader starts here, so they all treat
// nesting, overrides and errors the same way.
#ifndef MKD_COMMON_CONFIG_YAML_H_
#define MKD_COMMON_CONFIG_YAML_H_

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/vit_config.h"
#include "common/yaml_util.h"
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

// "host:port" with a port of at most 5 digits, <= 65535 (the host is not
// checked: gRPC and the OS judge it when binding or connecting).
bool IsHostPort(const std::string& s);

// An address other processes dial (a teacher's, as the pool hands it out):
// "host:port" with a host of 1 to 253 printable bytes, no whitespace or
// control characters ("[...]" for IPv6), and a port in 1..65535.
// kInvalidArgument naming `field` and quoting at most 64 bytes of `s`.
absl::Status CheckDialAddress(absl::string_view s, absl::string_view field);

// `s` for an error message: its first `max` bytes, control characters
// escaped, and how long it was when cut. Clients' strings are quoted
// through this, so a huge or multi-line value cannot blow up a message.
std::string QuoteForError(absl::string_view s, size_t max = 64);

// Sets one typed field of a Config from a YAML node; errors name the key.
template <typename Config>
using ConfigSetter =
    std::function<absl::Status(const YAML::Node&, const std::string& key, Config&)>;

// The setter for the field `field` returns, read as T ("an integer" etc. in
// errors about `what`).
template <typename Config, typename T>
ConfigSetter<Config> ConfigField(std::function<T&(Config&)> field, const char* what,
                                 const char* type_name) {
  return [field, what, type_name](const YAML::Node& n, const std::string& key, Config& c) {
    absl::StatusOr<T> v = YamlScalar<T>(n, what, key, type_name);
    if (!v.ok()) return v.status();
    field(c) = *std::move(v);
    return absl::OkStatus();
  };
}

// The setter for an enum field, read as a name and parsed once by `parse`
// (whose error says what it expected); errors name the key. Code that
// uses the config then switches on the enum instead of comparing strings.
template <typename Config, typename E>
ConfigSetter<Config> ConfigEnumField(std::function<E&(Config&)> field, const char* what,
                                     std::function<absl::StatusOr<E>(absl::string_view)> parse) {
  return [field, what, parse](const YAML::Node& n, const std::string& key, Config& c) {
    absl::StatusOr<std::string> name = YamlScalar<std::string>(n, what, key, "a name");
    if (!name.ok()) return name.status();
    absl::StatusOr<E> v = parse(*name);
    if (!v.ok()) return ConfigKeyError(what, key, v.status().message());
    field(c) = *v;
    return absl::OkStatus();
  };
}

// Applies every key of `flat` except `skip` with its setter; a key without
// one is kInvalidArgument "<what> key '<key>': unknown key".
template <typename Config>
absl::Status ApplyConfigKeys(const std::map<std::string, YAML::Node>& flat,
                             const std::map<std::string, ConfigSetter<Config>>& setters,
                             const char* what, const std::string& skip, Config& config) {
  for (const auto& [key, node] : flat) {
    if (key == skip) continue;
    auto it = setters.find(key);
    if (it == setters.end()) return ConfigKeyError(what, key, "unknown key");
    absl::Status st = it->second(node, key, config);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace mkd

#endif  // MKD_COMMON_CONFIG_YAML_H_
