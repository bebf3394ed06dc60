// `mkd`: the maskedkd command-line tool. Thin: flags -> options -> Run.
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/mask.h"
#include "cli/predict.h"
#ifdef MKD_WITH_POOL_CLI
#include "cli/pool.h"
#endif

namespace {

constexpr int kUsageError = 2;

int Usage(std::ostream& os) {
  os << "usage: mkd <command> [flags]\n\ncommands:\n"
        "  predict   run a ViT on a .npy batch (full or kept tokens)\n"
        "  mask      pick the teacher's kept patches from a student saliency\n"
#ifdef MKD_WITH_POOL_CLI
        "  status    the teacher pool and its jobs, from mkd-coordinator\n"
        "  drain     take a teacher out of the pool (it finishes its work first)\n"
        "  health    grpc.health.v1 check of mkd-teacher or mkd-coordinator\n"
        "  job-token a job's token for teachers that require one\n"
#endif
        "\n"
     << mkd::cli::PredictUsage() << "\n"
     << mkd::cli::MaskUsage();
  return kUsageError;
}

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

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "help") {
    Usage(args.empty() ? std::cerr : std::cout);
    return args.empty() ? kUsageError : 0;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  if (command == "predict") {
    return Dispatch<mkd::cli::PredictOptions>(
        command, args, mkd::cli::PredictUsage(), mkd::cli::ParsePredictFlags,
        [](const mkd::cli::PredictOptions& o) -> absl::StatusOr<std::string> {
          absl::Status st = mkd::cli::RunPredict(o);
          if (!st.ok()) return st;
          return std::string();
        });
  }
  if (command == "mask") {
    return Dispatch<mkd::cli::MaskOptions>(command, args, mkd::cli::MaskUsage(),
                                           mkd::cli::ParseMaskFlags, mkd::cli::RunMask);
  }
#ifdef MKD_WITH_POOL_CLI
  if (command == "status") {
    return Dispatch<mkd::cli::PoolOptions>(command, args, mkd::cli::StatusUsage(),
                                           mkd::cli::ParseStatusFlags, mkd::cli::RunStatus);
  }
  if (command == "drain") {
    return Dispatch<mkd::cli::PoolOptions>(command, args, mkd::cli::DrainUsage(),
                                           mkd::cli::ParseDrainFlags, mkd::cli::RunDrain);
  }
  if (command == "job-token") {
    return Dispatch<mkd::cli::JobTokenOptions>(command, args, mkd::cli::JobTokenUsage(),
                                               mkd::cli::ParseJobTokenFlags, mkd::cli::RunJobToken);
  }
  if (command == "health") {
    return Dispatch<mkd::cli::PoolOptions>(command, args, mkd::cli::HealthUsage(),
                                           mkd::cli::ParseHealthFlags, mkd::cli::RunHealth);
  }
#endif
  std::cerr << "mkd: error: unknown command '" << command << "'\n";
  return Usage(std::cerr);
}
