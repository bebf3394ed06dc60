// Runs one `mkd` subcommand: flags -> options -> Run, reported the same
// way by every subcommand. Header-only and Torch-free: both `mkd` and
// `mkd-model` use it.
#ifndef MKD_CLI_DISPATCH_H_
#define MKD_CLI_DISPATCH_H_

#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mkd::cli {

inline constexpr int kUsageError = 2;

// Parses, runs and reports one subcommand; no exception leaves it.
template <typename Options>
int Dispatch(const std::string& command, const std::vector<std::string>& args,
             const std::string& usage,
             const std::function<absl::StatusOr<Options>(const std::vector<std::string>&)>& parse,
             const std::function<absl::StatusOr<std::string>(const Options&)>& run) {
  if (!args.empty() && args[0] == "--help") {
    std::cout << usage;
    return 0;
  }
  auto options = parse(args);
  if (!options.ok()) {
    std::cerr << "mkd " << command << ": error: " << options.status().message() << "\n";
    return kUsageError;
  }
  absl::StatusOr<std::string> result;
  try {
    result = run(*options);
  } catch (const std::exception& e) {
    result = absl::InternalError(e.what());
  }
  if (!result.ok()) {
    std::cerr << "mkd " << command << ": error: " << result.status().message() << "\n";
    return 1;
  }
  if (!result->empty()) std::cout << *result << "\n";
  return 0;
}

}  // namespace mkd::cli

#endif  // MKD_CLI_DISPATCH_H_
