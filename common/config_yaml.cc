#include "common/config_yaml.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/yaml_util.h"

namespace mkd {
namespace {

// Keys must be scalars: a YAML mapping may have a sequence or a mapping as
// a key ("? [a, b]: 1"), which names no config key (found by config_fuzz:
// yaml-cpp threw out of as<std::string>() and ended the process).
absl::Status Flatten(const YAML::Node& node, const std::string& prefix,
                     const std::set<std::string>& whole, std::map<std::string, YAML::Node>* out) {
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config ", prefix.empty() ? "" : absl::StrCat("under '", prefix, "' "),
                       "has a key that is not a plain name (a list or mapping used as a key)"));
    }
    std::string key =
        prefix.empty() ? kv.first.Scalar() : absl::StrCat(prefix, ".", kv.first.Scalar());
    if (kv.second.IsMap() && whole.count(key) == 0) {
      absl::Status st = Flatten(kv.second, key, whole, out);
      if (!st.ok()) return st;
    } else {
      (*out)[key] = kv.second;
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyOverride(const std::string& text, const std::set<std::string>& whole,
                           std::map<std::string, YAML::Node>* flat) {
  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat("--set '", text, "': expected key=value"));
  }
  std::string key = text.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("--set '", text, "': bad value: ", e.what()));
  }
  for (const std::string& w : whole) {
    if (key.rfind(w + ".", 0) != 0) continue;
    YAML::Node sub = (*flat)[w];
    if (!sub.IsMap()) {
      YAML::Node map;
      if (sub.IsScalar()) map["preset"] = sub.Scalar();
      sub = map;
    }
    sub[key.substr(w.size() + 1)] = value;
    (*flat)[w] = sub;
    return absl::OkStatus();
  }
  (*flat)[key] = value;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::map<std::string, YAML::Node>> FlattenConfig(
    const std::string& yaml_text, const std::vector<std::string>& overrides,
    const std::set<std::string>& whole) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config is not valid YAML: ", e.what()));
  }
  if (!root.IsMap() && !root.IsNull())
    return absl::InvalidArgumentError("config must be a YAML mapping");
  std::map<std::string, YAML::Node> flat;
  if (root.IsMap()) {
    absl::Status st = Flatten(root, "", whole, &flat);
    if (!st.ok()) return st;
  }
  for (const std::string& o : overrides) {
    absl::Status st = ApplyOverride(o, whole, &flat);
    if (!st.ok()) return st;
  }
  return flat;
}

absl::StatusOr<ViTConfig> ModelFromConfigNode(const YAML::Node& node, const std::string& what,
                                              const std::string& key, std::string* spec) {
  if (!node || node.IsNull()) return ConfigKeyError(what, key, "is required");
  absl::StatusOr<ViTConfig> model;
  if (node.IsScalar()) {
    *spec = node.Scalar();
    model = ResolveViTConfig(*spec);
  } else {
    YAML::Emitter out;
    out << node;
    *spec = "inline";
    model = ParseViTConfigYaml(out.c_str());
  }
  if (!model.ok()) return ConfigKeyError(what, key, model.status().message());
  return model;
}

bool IsHostPort(const std::string& s) {
  const size_t colon = s.rfind(':');
  // At most 5 digits, so the number below cannot overflow.
  if (colon == std::string::npos || colon + 1 == s.size() || s.size() - colon - 1 > 5) return false;
  for (size_t i = colon + 1; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return std::stol(s.substr(colon + 1)) <= 65535;
}

std::string QuoteForError(absl::string_view s, size_t max) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out += static_cast<char>(c);
    } else {
      out += absl::StrFormat("\\x%02x", c);
    }
  }
  out += "'";
  if (s.size() > max) absl::StrAppend(&out, "... (", s.size(), " bytes)");
  return out;
}

absl::Status CheckDialAddress(absl::string_view s, absl::string_view field) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", QuoteForError(s), " is not host:port (", why, ")"));
  };
  const size_t colon = s.rfind(':');
  if (colon == absl::string_view::npos) return bad("no port");
  const absl::string_view host = s.substr(0, colon), port = s.substr(colon + 1);
  if (host.empty()) return bad("empty host");
  if (host.size() > 253) return bad("the host is over 253 bytes");
  for (char c : host) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return bad("the host holds whitespace, a control or a non-ASCII character");
    }
  }
  int value = 0;
  if (port.empty() || port.size() > 5 || !absl::SimpleAtoi(port, &value) || value < 1 ||
      value > 65535 || port.find_first_not_of("0123456789") != absl::string_view::npos) {
    return bad("the port must be 1 to 65535");
  }
  return absl::OkStatus();
}

}  // namespace mkd
