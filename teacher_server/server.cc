#include "teacher_server/server.h"

#include <grpcpp/grpcpp.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "rpc/server.h"

namespace mkd::teacher {

absl::StatusOr<std::unique_ptr<TeacherServer>> TeacherServer::Start(
    const TeacherServerConfig& config, std::unique_ptr<Engine> engine,
    TeacherServiceImpl::Clock clock) {
  std::unique_ptr<TeacherServer> s(new TeacherServer());
  if (engine == nullptr) {
    MKD_ASSIGN_OR_RETURN(engine, Engine::Create(config));
  }
  s->engine_ = std::move(engine);
  s->metrics_ = std::make_unique<TeacherMetrics>();
  s->batcher_ = std::make_unique<Batcher>(s->engine_.get(), config.batcher,
                                          absl::Seconds(config.job_idle_s), s->metrics_.get());
  s->service_ = std::make_unique<TeacherServiceImpl>(config, s->engine_.get(), s->batcher_.get(),
                                                     s->metrics_.get(), std::move(clock));

  rpc::ServerOptions server;
  server.listen = config.listen;
  server.tls = config.tls;
  server.services = {s->service_.get()};
  server.max_message_bytes = config.max_message_bytes;
  server.stream_window_bytes = 16 << 20;  // Requests are megabytes of patches.
  MKD_ASSIGN_OR_RETURN(rpc::StartedServer started, rpc::StartServer(server));
  s->server_ = std::move(started.server);
  s->port_ = started.port;
  if (!config.metrics_listen.empty()) {
    TeacherMetrics* metrics = s->metrics_.get();
    s->http_ = std::make_unique<MetricsHttpServer>([metrics] { return metrics->Serialize(); });
    MKD_ASSIGN_OR_RETURN(s->metrics_port_, s->http_->Start(config.metrics_listen));
  }
  return s;
}

TeacherServer::~TeacherServer() { Shutdown(); }

absl::StatusOr<double> TeacherServer::MeasureCapacity() {
  const ViTConfig& c = engine_->config();
  const int64_t b = 8, k = std::max<int64_t>(1, c.num_patches() / 2);
  torch::Tensor patches = torch::randn({b, k, c.patch_dim()});
  torch::Tensor idx = torch::arange(k, torch::kInt64).repeat({b, 1});
  MKD_RETURN_IF_ERROR(engine_->Run(patches, idx, false).status());  // Warm-up.
  const int kRuns = 3;
  const absl::Time start = absl::Now();
  for (int i = 0; i < kRuns; ++i) MKD_RETURN_IF_ERROR(engine_->Run(patches, idx, false).status());
  const double secs = std::max(1e-9, absl::ToDoubleSeconds(absl::Now() - start));
  return kRuns * b * (k + 1) / secs;
}

std::string TeacherServer::AdvertisedAddress(const TeacherServerConfig& config) const {
  std::string host = config.advertise_host;
  if (host.empty()) {
    host = config.listen.substr(0, config.listen.rfind(':'));
    if (host == "0.0.0.0" || host == "[::]" || host == "::" || host.empty()) host = "127.0.0.1";
  }
  return absl::StrCat(host, ":", port_);
}

void TeacherServer::Shutdown(absl::Duration grace) {
  std::call_once(shutdown_once_, [&] {
    if (server_) {
      server_->GetHealthCheckService()->SetServingStatus(false);
    }
    // Accepted work first: its answers go out on streams that are still open.
    if (batcher_) batcher_->Shutdown();
    if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    if (http_) http_->Stop();
  });
}

}  // namespace mkd::teacher
