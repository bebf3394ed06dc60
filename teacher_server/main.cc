// mkd-teacher: serves one MaskedKD teacher over gRPC.
//   mkd-teacher --config teacher.yaml [--set key=value ...]
// Prints one "mkd-teacher: serving ..." line with the bound ports once ready;
// SIGINT/SIGTERM drain accepted work and exit 0.
#include <csignal>
#include <cstdio>
#include <iostream>

#include "common/flags.h"
#include "common/runtime.h"
#include "common/status_macros.h"
#include "teacher_server/server.h"

namespace {

constexpr int kUsageError = 2;

const std::vector<mkd::FlagSpec>& Specs() {
  static const auto* specs = new std::vector<mkd::FlagSpec>{
      {"config", true, "server config (.yaml)"},
      {"set", true, "override a config key: key=value (repeatable)", true},
  };
  return *specs;
}

absl::Status Run(const mkd::ParsedFlags& flags) {
  MKD_ASSIGN_OR_RETURN(std::string path, flags.Required("config"));
  MKD_ASSIGN_OR_RETURN(mkd::teacher::TeacherServerConfig config,
                       mkd::teacher::LoadTeacherServerConfig(path, flags.GetAll("set")));
  // Signals are taken by sigwait below, not by handlers on random threads:
  // block them before any thread starts so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  mkd::ConfigureRuntime(config.threads);
  MKD_ASSIGN_OR_RETURN(auto server, mkd::teacher::TeacherServer::Start(config));
  std::printf("mkd-teacher: serving %s on port %d (metrics port %d, device %s, dtype %s)\n",
              server->service().info().model_id().c_str(), server->port(), server->metrics_port(),
              server->service().info().device().c_str(), config.dtype.c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  std::printf("mkd-teacher: signal %d, draining\n", sig);
  std::fflush(stdout);
  server->Shutdown();
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--help") {
    std::cout << "usage: mkd-teacher --config teacher.yaml [--set k=v ...]\n"
              << mkd::FlagsUsage(Specs());
    return 0;
  }
  auto flags = mkd::ParseFlags(args, Specs());
  if (!flags.ok()) {
    std::cerr << "mkd-teacher: error: " << flags.status().message() << "\n"
              << "usage: mkd-teacher --config teacher.yaml [--set k=v ...]\n";
    return kUsageError;
  }
  absl::Status status;
  try {
    status = Run(*flags);
  } catch (const std::exception& e) {  // No exception leaves main.
    status = absl::InternalError(e.what());
  }
  if (!status.ok()) {
    std::cerr << "mkd-teacher: error: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
