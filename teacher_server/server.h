// A running teacher server: engine, batcher, gRPC (TeacherService and
// grpc.health.v1) and /metrics, started and stopped together.
// Thread-safe.
#ifndef MKD_TEACHER_SERVER_SERVER_H_
#define MKD_TEACHER_SERVER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/status/statusor.h"
#include "common/metrics_http.h"
#include "teacher_server/batcher.h"
#include "teacher_server/engine.h"
#include "teacher_server/metrics.h"
#include "teacher_server/server_config.h"
#include "teacher_server/service.h"

namespace mkd::teacher {

class TeacherServer {
 public:
  // Builds the engine from `config` (or takes `engine`), then starts the
  // batcher, the gRPC server on config.listen and /metrics on
  // config.metrics_listen. Errors: the engine's, or kUnavailable when an
  // address cannot be bound.
  // `clock`: a test's, for the idle-stream sweep, which the test then runs
  // itself (TeacherServiceImpl's constructor).
  static absl::StatusOr<std::unique_ptr<TeacherServer>> Start(
      const TeacherServerConfig& config, std::unique_ptr<Engine> engine = nullptr,
      TeacherServiceImpl::Clock clock = nullptr);
  ~TeacherServer();  // Shutdown().

  int port() const { return port_; }                  // The bound gRPC port.
  int metrics_port() const { return metrics_port_; }  // 0 when off.
  TeacherServiceImpl& service() { return *service_; }
  TeacherMetrics& metrics() { return *metrics_; }

  // Kept tokens per second of the engine: a few timed forwards of
  // synthetic micro-batches (k = N/2, the default keep), after a warm-up.
  absl::StatusOr<double> MeasureCapacity();

  // The address the pool should advertise for this server (see
  // TeacherServerConfig::advertise_host).
  std::string AdvertisedAddress(const TeacherServerConfig& config) const;

  // Drains: micro-batches arriving from now on are answered UNAVAILABLE
  // (clients retry elsewhere), every accepted one is computed and answered,
  // then open streams get `grace` to read their answers before they are
  // cancelled. Idempotent.
  void Shutdown(absl::Duration grace = absl::Seconds(2));
  // False once Shutdown has begun refusing new micro-batches.
  bool accepting() { return batcher_ && batcher_->accepting(); }

 private:
  TeacherServer() = default;

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<TeacherMetrics> metrics_;
  std::unique_ptr<Batcher> batcher_;
  std::unique_ptr<TeacherServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsHttpServer> http_;
  int port_ = 0;
  int metrics_port_ = 0;
  std::once_flag shutdown_once_;
};

}  // namespace mkd::teacher

#endif  // MKD_TEACHER_SERVER_SERVER_H_
