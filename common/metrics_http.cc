#include "common/metrics_http.h"

#include <httplib.h>

#include "absl/strings/str_cat.h"

namespace mkd {

MetricsHttpServer::MetricsHttpServer(std::function<std::string()> render)
    : render_(std::move(render)), server_(std::make_unique<httplib::Server>()) {}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

absl::StatusOr<int> MetricsHttpServer::Start(const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  const std::string host = host_port.substr(0, colon);
  const int port = std::stoi(host_port.substr(colon + 1));
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(render_(), "text/plain; version=0.0.4; charset=utf-8");
  });
  int bound = port;
  if (port == 0) {
    bound = server_->bind_to_any_port(host);
  } else if (!server_->bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ", host_port));
  }
  // on_exit runs however the loop ended (it may throw): Stop() must see it end.
  thread_ = Thread(
      "mkd-metrics", [this] { server_->listen_after_bind(); },
      [this](const absl::Status&) { listening_done_ = true; });
  return bound;
}

void MetricsHttpServer::Stop() {
  if (!thread_.joinable()) return;
  // httplib's stop() does nothing until the listen loop has marked itself
  // running, so a Stop right after Start would leave accept() blocked
  // forever: repeat it until the loop has really returned.
  while (!listening_done_) {
    server_->stop();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  thread_.Join().IgnoreError();  // A failure was logged by the thread.
}

}  // namespace mkd
