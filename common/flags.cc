#include "common/flags.h"

#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"

namespace mkd {

std::optional<std::string> ParsedFlags::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> ParsedFlags::GetAll(const std::string& name) const {
  auto it = repeated_.find(name);
  return it == repeated_.end() ? std::vector<std::string>() : it->second;
}

absl::StatusOr<std::string> ParsedFlags::Required(const std::string& name) const {
  auto v = Get(name);
  if (!v) return absl::InvalidArgumentError(absl::StrCat("missing required flag --", name));
  return *v;
}

absl::StatusOr<int64_t> ParsedFlags::GetInt(const std::string& name, int64_t fallback) const {
  auto v = Get(name);
  if (!v) return fallback;
  int64_t out;
  if (!absl::SimpleAtoi(*v, &out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag --", name, " expects an integer, got '", *v, "'"));
  }
  return out;
}

absl::StatusOr<ParsedFlags> ParseFlags(const std::vector<std::string>& args,
                                       const std::vector<FlagSpec>& specs) {
  ParsedFlags parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!absl::StartsWith(arg, "--")) {
      parsed.positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    const FlagSpec* spec = nullptr;
    for (const auto& s : specs) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (parsed.values_.count(name) && !spec->repeated) {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " given twice"));
    }
    if (!spec->takes_value) {
      if (value)
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " takes no value"));
      parsed.values_[name] = "true";
      continue;
    }
    if (!value) {
      if (i + 1 >= args.size() || absl::StartsWith(args[i + 1], "--")) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
      value = args[++i];
    }
    parsed.values_[name] = *value;
    if (spec->repeated) parsed.repeated_[name].push_back(*value);
  }
  return parsed;
}

std::string FlagsUsage(const std::vector<FlagSpec>& specs) {
  std::string out;
  for (const auto& s : specs) {
    absl::StrAppendFormat(&out, "  --%-16s %s\n",
                          s.takes_value ? absl::StrCat(s.name, " V") : s.name, s.help);
  }
  return out;
}

int RunMain(const char* name, const std::string& usage, const std::vector<FlagSpec>& specs,
            int argc, char** argv, const std::function<absl::Status(const ParsedFlags&)>& run) {
  InitLogging(name);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--help") {
    std::cout << usage << FlagsUsage(specs);
    return 0;
  }
  absl::StatusOr<ParsedFlags> flags = ParseFlags(args, specs);
  if (!flags.ok()) {
    std::cerr << name << ": error: " << flags.status().message() << "\n" << usage;
    return 2;
  }
  absl::Status status;
  try {
    status = run(*flags);
  } catch (const std::exception& e) {
    status = absl::InternalError(e.what());
  }
  if (!status.ok()) {
    std::cerr << name << ": error: " << status.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace mkd
