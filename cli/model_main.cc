// `mkd-model`: the subcommands of `mkd` that run a ViT (predict, mask), in
// the one binary that links LibTorch. `mkd predict ...` and `mkd mask ...`
// exec it, so the operator's commands (status, drain, health, tokens) start
// without loading LibTorch.
#include <iostream>
#include <string>
#include <vector>

#include "cli/dispatch.h"
#include "cli/mask.h"
#include "cli/predict.h"
#include "common/log.h"

int main(int argc, char** argv) {
  mkd::InitLogging("mkd-model");
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help") {
    (args.empty() ? std::cerr : std::cout)
        << "usage: mkd-model predict|mask [flags] (run as `mkd predict`, `mkd mask`)\n\n"
        << mkd::cli::PredictUsage() << "\n"
        << mkd::cli::MaskUsage();
    return args.empty() ? mkd::cli::kUsageError : 0;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  if (command == "predict") {
    return mkd::cli::Dispatch<mkd::cli::PredictOptions>(
        command, args, mkd::cli::PredictUsage(), mkd::cli::ParsePredictFlags,
        [](const mkd::cli::PredictOptions& o) -> absl::StatusOr<std::string> {
          absl::Status st = mkd::cli::RunPredict(o);
          if (!st.ok()) return st;
          return std::string();
        });
  }
  if (command == "mask") {
    return mkd::cli::Dispatch<mkd::cli::MaskOptions>(command, args, mkd::cli::MaskUsage(),
                                                     mkd::cli::ParseMaskFlags, mkd::cli::RunMask);
  }
  std::cerr << "mkd-model: error: unknown command '" << command << "' (predict or mask)\n";
  return mkd::cli::kUsageError;
}
