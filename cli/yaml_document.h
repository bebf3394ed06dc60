// A YAML document built in code and written out: Kubernetes manifests that
// `mkd job manifest` prints. yaml-cpp's Node cannot tell the string "2"
// from the number 2 and would write both bare, which Kubernetes then
// rejects where it wants a string (env values, labels); a Yaml value keeps
// its type, and strings that would read back as something else are quoted.
// Maps keep the order they were built in, as a reader expects
// (apiVersion, kind, metadata, spec). Torch-free, gRPC-free.
#ifndef MKD_CLI_YAML_DOCUMENT_H_
#define MKD_CLI_YAML_DOCUMENT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace mkd::cli {

class Yaml;
using YamlMap = std::vector<std::pair<std::string, Yaml>>;
using YamlList = std::vector<Yaml>;

class Yaml {
 public:
  Yaml(const char* s) : value_(std::string(s)) {}   // NOLINT: implicit by design.
  Yaml(std::string s) : value_(std::move(s)) {}     // NOLINT
  Yaml(int v) : value_(static_cast<int64_t>(v)) {}  // NOLINT
  Yaml(int64_t v) : value_(v) {}                    // NOLINT
  Yaml(bool v) : value_(v) {}                       // NOLINT
  Yaml(YamlMap m) : value_(std::move(m)) {}         // NOLINT
  Yaml(YamlList l) : value_(std::move(l)) {}        // NOLINT

  // Adds `key: value` to a map (the value must be one).
  Yaml& Add(std::string key, Yaml value);
  // Appends to a list (the value must be one).
  Yaml& Append(Yaml value);

  // The value as YAML text, ending in a newline.
  std::string ToString() const;

 private:
  friend class YamlWriter;
  std::variant<std::string, int64_t, bool, YamlMap, YamlList> value_;
};

// Several documents as one stream, separated by "---".
std::string YamlStream(const std::vector<Yaml>& documents);

}  // namespace mkd::cli

#endif  // MKD_CLI_YAML_DOCUMENT_H_
