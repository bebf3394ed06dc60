// A running coordinator: the Pool, its gRPC service, /metrics and a ticker
// thread that expires leases and refreshes the metrics, started and stopped
// together. Thread-safe.
#ifndef MKD_COORDINATOR_SERVER_H_
#define MKD_COORDINATOR_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>  // std::once_flag

#include "absl/status/statusor.h"
#include "common/metrics_http.h"
#include "common/mutex.h"
#include "common/thread.h"
#include "coordinator/config.h"
#include "coordinator/metrics.h"
#include "coordinator/pool.h"
#include "coordinator/service.h"

namespace mkd::coordinator {

class CoordinatorServer {
 public:
  // Binds config.listen (and metrics_listen) and starts serving.
  // kUnavailable when an address cannot be bound.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(const CoordinatorConfig& config);
  ~CoordinatorServer();  // Shutdown().

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  Pool& pool() { return *pool_; }
  CoordinatorMetrics& metrics() { return *metrics_; }

  // Ends watch streams, stops the server and the ticker. Idempotent.
  void Shutdown();

 private:
  CoordinatorServer() = default;
  void TickLoop(absl::Duration every);

  std::unique_ptr<Pool> pool_;
  std::unique_ptr<CoordinatorMetrics> metrics_;
  std::unique_ptr<CoordinatorServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsHttpServer> http_;
  int port_ = 0;
  int metrics_port_ = 0;

  Mutex mu_;
  CondVar wake_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Thread ticker_;
  std::once_flag shutdown_once_;
};

}  // namespace mkd::coordinator

#endif  // MKD_COORDINATOR_SERVER_H_
