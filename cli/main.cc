// `mkd`: the maskedkd command-line tool. Thin: flags -> options -> Run.
// It links no LibTorch, so the operator's commands start at once; predict
// and mask run a ViT and exec `mkd-model`, installed next to `mkd`.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "cli/dispatch.h"
#ifdef MKD_WITH_POOL_CLI
#include "cli/job_manifest.h"
#include "cli/pool.h"
#include "common/log.h"
#endif

namespace {

int Usage(std::ostream& os) {
  os << "usage: mkd <command> [flags]; mkd <command> --help for its flags\n\ncommands:\n"
        "  predict   run a ViT on a .npy batch (full or kept tokens)\n"
        "  mask      pick the teacher's kept patches from a student saliency\n"
#ifdef MKD_WITH_POOL_CLI
        "  status    the teacher pool and its jobs, from mkd-coordinator\n"
        "  drain     take a teacher out of the pool (it finishes its work first)\n"
        "  health    grpc.health.v1 check of mkd-teacher or mkd-coordinator\n"
        "  token     a pool token for a teacher, a job or an operator\n"
        "  job-token a job token of the old kind (mkd token --role job replaces it)\n"
        "  job manifest  a distillation job's Kubernetes manifests\n"
#endif
      ;
  return mkd::cli::kUsageError;
}

// The directory this binary was started from (its siblings live there).
std::string OwnDirectory() {
  char path[4096];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0) return ".";
  const std::string exe(path, static_cast<size_t>(n));
  const size_t slash = exe.rfind('/');
  return slash == std::string::npos ? "." : exe.substr(0, slash);
}

// Replaces this process with `mkd-model <command> <args...>`; returns only
// when that fails.
int ExecModelTool(const std::string& command, const std::vector<std::string>& args) {
  const std::string tool = OwnDirectory() + "/mkd-model";
  std::vector<std::string> owned = {tool, command};
  owned.insert(owned.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : owned) argv.push_back(a.data());
  argv.push_back(nullptr);
  execv(tool.c_str(), argv.data());
  std::cerr << "mkd " << command << ": error: cannot run " << tool << " (" << std::strerror(errno)
            << "): `mkd " << command << "` needs mkd-model next to mkd (build target mkd-model)\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  mkd::InitLogging("mkd");
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "help") {
    Usage(args.empty() ? std::cerr : std::cout);
    return args.empty() ? mkd::cli::kUsageError : 0;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  if (command == "predict" || command == "mask") return ExecModelTool(command, args);
#ifdef MKD_WITH_POOL_CLI
  using mkd::cli::Dispatch;
  if (command == "status") {
    return Dispatch<mkd::cli::PoolOptions>(command, args, mkd::cli::StatusUsage(),
                                           mkd::cli::ParseStatusFlags, mkd::cli::RunStatus);
  }
  if (command == "drain") {
    return Dispatch<mkd::cli::PoolOptions>(command, args, mkd::cli::DrainUsage(),
                                           mkd::cli::ParseDrainFlags, mkd::cli::RunDrain);
  }
  if (command == "token") {
    return Dispatch<mkd::cli::TokenOptions>(command, args, mkd::cli::TokenUsage(),
                                            mkd::cli::ParseTokenFlags, mkd::cli::RunToken);
  }
  if (command == "job-token") {
    return Dispatch<mkd::cli::JobTokenOptions>(command, args, mkd::cli::JobTokenUsage(),
                                               mkd::cli::ParseJobTokenFlags, mkd::cli::RunJobToken);
  }
  if (command == "job") {
    if (args.empty() || args[0] != "manifest") {
      std::cerr << "mkd job: error: expected `mkd job manifest --name NAME ...`\n";
      return mkd::cli::kUsageError;
    }
    args.erase(args.begin());
    return Dispatch<mkd::cli::JobManifestOptions>(
        "job manifest", args, mkd::cli::JobManifestUsage(), mkd::cli::ParseJobManifestFlags,
        mkd::cli::RunJobManifest);
  }
  if (command == "health") {
    return Dispatch<mkd::cli::PoolOptions>(command, args, mkd::cli::HealthUsage(),
                                           mkd::cli::ParseHealthFlags, mkd::cli::RunHealth);
  }
#endif
  std::cerr << "mkd: error: unknown command '" << command << "'\n";
  return Usage(std::cerr);
}
