// Serves GET /metrics over HTTP with cpp-httplib. Not prometheus-cpp's
// Exposer: its civetweb threads have a 100 KiB stack, and OpenBLAS's static
// TLS (loaded with LibTorch) does not fit in it (see TOOLCHAIN.md); httplib's
// threads get the default stack. Thread-safe.
#ifndef MKD_COMMON_METRICS_HTTP_H_
#define MKD_COMMON_METRICS_HTTP_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/thread.h"

namespace httplib {
class Server;
}

namespace mkd {

class MetricsHttpServer {
 public:
  // `render` returns the exposition text; called on httplib's threads.
  explicit MetricsHttpServer(std::function<std::string()> render);
  ~MetricsHttpServer();  // Stops and joins.

  // Binds "host:port" (port 0: any free port) and serves in a thread.
  // Returns the bound port; kUnavailable if the address cannot be bound.
  absl::StatusOr<int> Start(const std::string& host_port);
  void Stop();

 private:
  std::function<std::string()> render_;
  std::unique_ptr<httplib::Server> server_;
  Thread thread_;
  std::atomic<bool> listening_done_{false};  // Set when listen returns.
};

}  // namespace mkd

#endif  // MKD_COMMON_METRICS_HTTP_H_
