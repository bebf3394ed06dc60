#include "teacher_server/server.h"

#include <grpcpp/health_check_service_interface.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "proto/transport_security.h"

namespace mkd::teacher {

absl::StatusOr<std::unique_ptr<TeacherServer>> TeacherServer::Start(
    const TeacherServerConfig& config, std::unique_ptr<Engine> engine) {
  std::unique_ptr<TeacherServer> s(new TeacherServer());
  if (engine == nullptr) {
    MKD_ASSIGN_OR_RETURN(engine, Engine::Create(config));
  }
  s->engine_ = std::move(engine);
  s->metrics_ = std::make_unique<TeacherMetrics>();
  s->batcher_ = std::make_unique<Batcher>(s->engine_.get(), config.batcher,
                                          absl::Seconds(config.job_idle_s), s->metrics_.get());
  s->service_ = std::make_unique<TeacherServiceImpl>(config, s->engine_.get(), s->batcher_.get(),
                                                     s->metrics_.get());

  MKD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                       MakeServerCredentials(config.tls));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen, credentials, &s->port_);
  // Without this gRPC sets SO_REUSEPORT, and a second server on a busy
  // port would silently share its connections instead of failing.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_message_bytes));
  // Requests are megabytes of patches: a flow-control window that holds
  // one from the start (gRPC's default starts at 64 KiB).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 << 20);
  builder.SetMaxSendMessageSize(static_cast<int>(config.max_message_bytes));
  builder.RegisterService(s->service_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on '", config.listen,
                                               "' (config key 'listen'); is the port in use?"));
  }
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
