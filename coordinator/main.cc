// mkd-coordinator: the registry and planner of a MaskedKD teacher pool.
//   mkd-coordinator --config coordinator.yaml [--set key=value ...]
// Logs one "listening on port N (metrics port M)" line once ready; SIGINT/SIGTERM stop it (exit 0).
// Links no LibTorch.
#include <csignal>

#include "common/flags.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "coordinator/server.h"
#include "rpc/pool_auth.h"

namespace {

constexpr char kUsage[] = "usage: mkd-coordinator [--config coordinator.yaml] [--set k=v ...]\n";

const std::vector<mkd::FlagSpec>& Specs() {
  static const auto* specs = new std::vector<mkd::FlagSpec>{
      {"config", true, "coordinator config (.yaml); defaults apply without one"},
      {"set", true, "override a config key: key=value (repeatable)", true},
  };
  return *specs;
}

absl::Status Run(const mkd::ParsedFlags& flags) {
  const std::vector<std::string> overrides = flags.GetAll("set");
  absl::StatusOr<mkd::coordinator::CoordinatorConfig> config =
      flags.Get("config") ? mkd::coordinator::LoadCoordinatorConfig(*flags.Get("config"), overrides)
                          : mkd::coordinator::ParseCoordinatorConfig("", overrides);
  if (!config.ok()) return config.status();
  mkd::WarnIfInsecure(config->tls);
  mkd::rpc::WarnIfOpen(config->auth);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // Before any thread starts.
  MKD_ASSIGN_OR_RETURN(auto server, mkd::coordinator::CoordinatorServer::Start(*config));
  MKD_LOG(INFO) << "listening on port " << server->port() << " (metrics port "
                << server->metrics_port() << "), lease " << config->lease_s << " s";
  int sig = 0;
  sigwait(&signals, &sig);
  MKD_LOG(INFO) << "signal " << sig << ", stopping";
  server->Shutdown();
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  return mkd::RunMain("mkd-coordinator", kUsage, Specs(), argc, argv, Run);
}
