#include "coordinator/server.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "rpc/server.h"

namespace mkd::coordinator {

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorConfig& config) {
  std::unique_ptr<CoordinatorServer> s(new CoordinatorServer());
  PoolOptions o;
  o.lease = absl::Seconds(config.lease_s);
  o.heartbeat = absl::Seconds(config.heartbeat_s);
  o.settle = absl::Seconds(config.settle_s < 0 ? config.lease_s : config.settle_s);
  o.forget_gone = absl::Seconds(config.forget_gone_s);
  o.explore_steps = config.explore_steps;
  o.batch_changes = true;  // Joins are recomputed once per tick (at most 250 ms later).
  s->pool_ = std::make_unique<Pool>(o);
  s->metrics_ = std::make_unique<CoordinatorMetrics>();
  s->metrics_->Update(s->pool_->Stats());
  s->service_ = std::make_unique<CoordinatorServiceImpl>(config, s->pool_.get(), s->metrics_.get());
  CoordinatorServiceImpl* service = s->service_.get();
  s->pool_->SetOnChange(
      [service](const std::vector<std::string>& jobs) { service->OnChange(jobs); });

  rpc::ServerOptions server;
  server.listen = config.listen;
  server.tls = config.tls;
  server.services = {s->service_.get()};
  MKD_ASSIGN_OR_RETURN(rpc::StartedServer started, rpc::StartServer(server));
  s->server_ = std::move(started.server);
  s->port_ = started.port;
  if (!config.metrics_listen.empty()) {
    CoordinatorMetrics* metrics = s->metrics_.get();
    s->http_ = std::make_unique<MetricsHttpServer>([metrics] { return metrics->Serialize(); });
    MKD_ASSIGN_OR_RETURN(s->metrics_port_, s->http_->Start(config.metrics_listen));
  }
  // Leases are checked well within a heartbeat, so a death is seen within
  // lease + heartbeat / 4.
  const absl::Duration every =
      std::min(absl::Milliseconds(250), absl::Seconds(config.heartbeat_s) / 4);
  CoordinatorServer* server_ptr = s.get();
  s->ticker_ = Thread(
      "mkd-lease-tick", [server_ptr, every] { server_ptr->TickLoop(every); },
      [server_ptr](const absl::Status& st) {
        if (st.ok()) return;
        // No lease would expire again: stop answering health checks, so
        // that probes fail and the orchestrator restarts this process.
        MKD_LOG(ERROR) << "the lease ticker died; health is now NOT_SERVING";
        server_ptr->server_->GetHealthCheckService()->SetServingStatus(false);
      });
  return s;
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

void CoordinatorServer::TickLoop(absl::Duration every) {
  for (;;) {
    pool_->Tick();
    metrics_->Update(pool_->Stats());
    MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + every;
    while (!stopping_ && wake_.WaitWithDeadline(&mu_, deadline)) {
    }
    if (stopping_) return;
  }
}

void CoordinatorServer::Shutdown() {
  std::call_once(shutdown_once_, [&] {
    {
      MutexLock lock(&mu_);
      stopping_ = true;
    }
    wake_.SignalAll();
    ticker_.Join().IgnoreError();  // A failure was logged and reported.
    if (server_) server_->GetHealthCheckService()->SetServingStatus(false);
    if (service_) service_->CloseWatches();
    if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    if (http_) http_->Stop();
  });
}

}  // namespace mkd::coordinator
