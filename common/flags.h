// A small command-line flag parser shared by the binaries: `--name value`
// or `--name=value`, boolean `--name`, and positional arguments. Unknown,
// repeated or value-less flags are kInvalidArgument errors naming the flag.
// Torch-free.
#ifndef MKD_COMMON_FLAGS_H_
#define MKD_COMMON_FLAGS_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mkd {

struct FlagSpec {
  std::string name;  // Without the leading "--".
  bool takes_value = true;
  std::string help;
  bool repeated = false;  // May be given many times; read with GetAll().
};

class ParsedFlags {
 public:
  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> Get(const std::string& name) const;
  // kInvalidArgument "missing required flag --name".
  absl::StatusOr<std::string> Required(const std::string& name) const;
  // Integer value of --name (or `fallback` if absent); errors name the flag.
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback) const;
  // Every value of a repeated flag, in order.
  std::vector<std::string> GetAll(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  friend absl::StatusOr<ParsedFlags> ParseFlags(const std::vector<std::string>&,
                                                const std::vector<FlagSpec>&);
  std::map<std::string, std::string> values_;
  std::map<std::string, std::vector<std::string>> repeated_;
  std::vector<std::string> positional_;
};

// Parses `args` (without the program and subcommand names) against `specs`.
absl::StatusOr<ParsedFlags> ParseFlags(const std::vector<std::string>& args,
                                       const std::vector<FlagSpec>& specs);

// "  --name VALUE   help" lines for a usage message.
std::string FlagsUsage(const std::vector<FlagSpec>& specs);

// A server binary's main(): `--help` prints `usage` and the flags (exit 0);
// flags that do not parse print "<name>: error: ..." and `usage` (exit 2);
// `run`'s error, or an exception escaping it, prints "<name>: error: ..."
// (exit 1); success exits 0. No exception leaves it.
int RunMain(const char* name, const std::string& usage, const std::vector<FlagSpec>& specs,
            int argc, char** argv, const std::function<absl::Status(const ParsedFlags&)>& run);

}  // namespace mkd

#endif  // MKD_COMMON_FLAGS_H_
