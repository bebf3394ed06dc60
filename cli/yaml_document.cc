#include "cli/yaml_document.h"

#include <stdexcept>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "yaml-cpp/yaml.h"

namespace mkd::cli {
namespace {

// Whether a plain (unquoted) scalar `s` would read back as something other
// than this string under YAML 1.1 or 1.2: a number, a boolean, null, or
// nothing at all.
bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  static const char* const kWords[] = {"true", "false", "yes",  "no", "on",   "off",
                                       "y",    "n",     "null", "~",  ".inf", ".nan"};
  const std::string lower = absl::AsciiStrToLower(s);
  for (const char* w : kWords) {
    if (lower == w) return true;
  }
  // Anything a number could start with: digits, signs, a leading dot
  // ("0440", "1e3", "+1", ".5"). Quoting a string that did not need it
  // changes nothing for a reader.
  const char c = s[0];
  return absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '+' || c == '.';
}

}  // namespace

class YamlWriter {
 public:
  static void Write(const Yaml& y, YAML::Emitter& e) {
    if (const auto* s = std::get_if<std::string>(&y.value_)) {
      if (absl::StrContains(*s, '\n')) {
        e << YAML::Literal << *s;
      } else if (NeedsQuotes(*s)) {
        e << YAML::DoubleQuoted << *s;
      } else {
        e << *s;
      }
    } else if (const auto* i = std::get_if<int64_t>(&y.value_)) {
      e << *i;
    } else if (const auto* b = std::get_if<bool>(&y.value_)) {
      e << YAML::TrueFalseBool << *b;
    } else if (const auto* m = std::get_if<YamlMap>(&y.value_)) {
      if (m->empty()) {
        e << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        return;
      }
      e << YAML::BeginMap;
      for (const auto& [key, value] : *m) {
        e << YAML::Key << key << YAML::Value;
        Write(value, e);
      }
      e << YAML::EndMap;
    } else {
      const auto& l = std::get<YamlList>(y.value_);
      if (l.empty()) {
        e << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        return;
      }
      e << YAML::BeginSeq;
      for (const Yaml& v : l) Write(v, e);
      e << YAML::EndSeq;
    }
  }
};

Yaml& Yaml::Add(std::string key, Yaml value) {
  auto* m = std::get_if<YamlMap>(&value_);
  if (m == nullptr) throw std::logic_error("Yaml::Add on a value that is not a map: " + key);
  m->emplace_back(std::move(key), std::move(value));
  return *this;
}

Yaml& Yaml::Append(Yaml value) {
  auto* l = std::get_if<YamlList>(&value_);
  if (l == nullptr) throw std::logic_error("Yaml::Append on a value that is not a list");
  l->push_back(std::move(value));
  return *this;
}

std::string Yaml::ToString() const {
  YAML::Emitter e;
  e.SetIndent(2);
  e.SetSeqFormat(YAML::Block);
  YamlWriter::Write(*this, e);
  return std::string(e.c_str()) + "\n";
}

std::string YamlStream(const std::vector<Yaml>& documents) {
  std::string out;
  for (size_t i = 0; i < documents.size(); ++i) {
    if (i > 0) out += "---\n";
    out += documents[i].ToString();
  }
  return out;
}

}  // namespace mkd::cli
