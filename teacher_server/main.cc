// mkd-teacher: serves one MaskedKD teacher over gRPC.
//   mkd-teacher --config teacher.yaml [--set key=value ...]
// Logs one "serving ... on port N (metrics port M, ...)" line once ready.
// With `coordinator:` set it joins that pool (registers, heartbeats) and a
// Drain from the coordinator makes it finish what it accepted and exit 0.
// SIGINT/SIGTERM drain accepted work and exit 0.
#include <grpcpp/grpcpp.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <random>

#include "common/flags.h"
#include "common/log.h"
#include "common/runtime.h"
#include "common/status_macros.h"
#include "rpc/job_token.h"
#include "rpc/pool_auth.h"
#include "rpc/transport_security.h"
#include "teacher_server/pool_member.h"
#include "teacher_server/server.h"

namespace {

const std::vector<mkd::FlagSpec>& Specs() {
  static const auto* specs = new std::vector<mkd::FlagSpec>{
      {"config", true, "server config (.yaml)"},
      {"set", true, "override a config key: key=value (repeatable)", true},
  };
  return *specs;
}

absl::StatusOr<std::unique_ptr<mkd::teacher::PoolMember>> JoinPool(
    const mkd::teacher::TeacherServerConfig& config, mkd::teacher::TeacherServer& server,
    double capacity) {
  // The teacher's own certificate is its client identity to the coordinator.
  MKD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                       mkd::rpc::MakeChannel(config.coordinator, config.tls, nullptr));
  maskedkd::v1::TeacherInfo info;
  info.set_address(server.AdvertisedAddress(config));
  info.set_model_id(server.service().info().model_id());
  info.set_device(server.service().info().device());
  info.set_host(server.service().info().host());
  info.set_host_id(server.service().info().host_id());
  info.set_dtype(std::string(mkd::FloatTypeName(config.dtype)));
  info.set_capacity_tokens_per_s(capacity);
  info.set_max_request_bytes(config.max_message_bytes);
  std::random_device rd;
  info.set_instance(uint64_t{rd()} << 32 | rd());
  mkd::teacher::TeacherMetrics* metrics = &server.metrics();
  auto last = std::make_shared<std::pair<absl::Time, int64_t>>(absl::Now(), 0);
  auto load = [metrics, last] {
    maskedkd::v1::TeacherLoad l;
    l.set_queued(metrics->queued());
    l.set_in_flight(metrics->in_flight());
    const absl::Time now = absl::Now();
    const int64_t tokens = metrics->tokens_served();
    const double secs = absl::ToDoubleSeconds(now - last->first);
    l.set_tokens_per_s(secs > 0 ? (tokens - last->second) / secs : 0);
    *last = {now, tokens};
    l.set_healthy(true);
    return l;
  };
  // With the pool secret, the teacher signs its own teacher token for the
  // address it registers, fresh for every call (an HMAC: cheap).
  std::function<std::string()> token = [] { return std::string(); };
  if (!config.auth.pool_secret_file.empty()) {
    MKD_ASSIGN_OR_RETURN(std::string secret, mkd::rpc::LoadJobSecret(config.auth.pool_secret_file,
                                                                     "auth.pool_secret_file"));
    token = [secret, address = info.address()] {
      return mkd::rpc::MakePoolToken(secret, mkd::rpc::Role::kTeacher, address,
                                     absl::Now() + absl::Minutes(10));
    };
  }
  return std::make_unique<mkd::teacher::PoolMember>(
      config.coordinator, std::move(channel), info, load,
      // Thread-directed: the main thread's sigwait takes it (a process-wide
      // signal could land on a library's thread that never blocked it).
      [main = pthread_self()] { pthread_kill(main, SIGUSR1); }, std::move(token));
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
  sigaddset(&signals, SIGUSR1);  // The pool's drain, from the member's thread.
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  mkd::WarnIfInsecure(config.tls);
  mkd::rpc::WarnIfOpen(config.auth);
  mkd::ConfigureRuntime(config.threads);
  MKD_ASSIGN_OR_RETURN(auto server, mkd::teacher::TeacherServer::Start(config));
  double capacity = config.capacity_tokens_per_s;
  if (!config.coordinator.empty() && capacity <= 0) {
    MKD_ASSIGN_OR_RETURN(capacity, server->MeasureCapacity());
  }
  MKD_LOG(INFO) << "serving " << server->service().info().model_id() << " on port "
                << server->port() << " (metrics port " << server->metrics_port() << ", device "
                << server->service().info().device() << ", dtype "
                << mkd::FloatTypeName(config.dtype) << ")";
  std::unique_ptr<mkd::teacher::PoolMember> member;
  if (!config.coordinator.empty()) {
    MKD_ASSIGN_OR_RETURN(member, JoinPool(config, *server, capacity));
  }
  int sig = 0;
  sigwait(&signals, &sig);
  const std::string why =
      sig == SIGUSR1 ? "drained by the coordinator" : "signal " + std::to_string(sig);
  MKD_LOG(INFO) << why << ", draining";
  server->Shutdown();  // Refuses new work, answers what it accepted.
  member.reset();      // Heartbeats stop: the lease ends the membership.
  MKD_LOG(INFO) << "stopped";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  return mkd::RunMain("mkd-teacher", "usage: mkd-teacher --config teacher.yaml [--set k=v ...]\n",
                      Specs(), argc, argv, Run);
}
