// `mkd`: the maskedkd command-line tool. Thin: flags -> options -> Run.
#include <iostream>
#include <string>
#include <vector>

#include "cli/predict.h"

namespace {

constexpr int kUsageError = 2;

int Usage(std::ostream& os) {
  os << "usage: mkd <command> [flags]\n\ncommands:\n"
        "  predict   run a ViT on a .npy batch (full or kept tokens)\n\n"
     << mkd::cli::PredictUsage();
  return kUsageError;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "help") {
    Usage(args.empty() ? std::cerr : std::cout);
    return args.empty() ? kUsageError : 0;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  if (command != "predict") {
    std::cerr << "mkd: error: unknown command '" << command << "'\n";
    return Usage(std::cerr);
  }
  if (!args.empty() && args[0] == "--help") {
    std::cout << mkd::cli::PredictUsage();
    return 0;
  }
  auto options = mkd::cli::ParsePredictFlags(args);
  if (!options.ok()) {
    std::cerr << "mkd predict: error: " << options.status().message() << "\n";
    return kUsageError;
  }
  absl::Status status;
  try {
    status = mkd::cli::RunPredict(*options);
  } catch (const std::exception& e) {  // No exception leaves main.
    status = absl::InternalError(e.what());
  }
  if (!status.ok()) {
    std::cerr << "mkd predict: error: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
