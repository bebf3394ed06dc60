#include "teacher_server/stream_limits.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mkd::teacher {
namespace {

// Decrements map[key], erasing it at zero so finished clients and jobs
// leave nothing behind in a long-running server.
void Decrement(std::map<std::string, int64_t>& map, const std::string& key) {
  auto it = map.find(key);
  if (it == map.end()) return;
  if (--it->second <= 0) map.erase(it);
}

// Takes one of map[key]'s `max` places (0: no limit); false when all are
// taken.
bool Take(std::map<std::string, int64_t>& map, const std::string& key, int64_t max) {
  int64_t& n = map[key];
  if (max != 0 && n >= max) return false;
  ++n;
  return true;
}

}  // namespace

std::string PeerHost(absl::string_view peer) {
  if (!absl::StartsWith(peer, "ipv4:") && !absl::StartsWith(peer, "ipv6:")) {
    return std::string(peer);
  }
  const size_t colon = peer.rfind(':');
  return std::string(colon > 4 ? peer.substr(0, colon) : peer);
}

StreamLimits::StreamLimits(const LimitsConfig& config, TeacherMetrics* metrics)
    : config_(config), metrics_(metrics) {}

absl::Status StreamLimits::Refuse(absl::string_view limit, absl::string_view what, int64_t max) {
  if (metrics_) metrics_->CountLimitRefusal(limit);
  return absl::ResourceExhaustedError(
      absl::StrCat(what, " (", max, ": the teacher's limits.max_", limit, ")"));
}

absl::Status StreamLimits::OpenStream(const std::string& client) {
  {
    MutexLock lock(&mu_);
    if (Take(client_streams_, client, config_.max_streams_per_client)) {
      ++open_streams_;
      if (metrics_) metrics_->SetOpenStreams(open_streams_);
      return absl::OkStatus();
    }
  }
  return Refuse("streams_per_client", "this client already has the most open streams allowed",
                config_.max_streams_per_client);
}

absl::Status StreamLimits::BindJob(const std::string& job) {
  {
    MutexLock lock(&mu_);
    if (Take(job_streams_, job, config_.max_streams_per_job)) return absl::OkStatus();
  }
  return Refuse("streams_per_job",
                absl::StrCat("job '", job, "' already has the most open streams allowed"),
                config_.max_streams_per_job);
}

void StreamLimits::CloseStream(const std::string& client, const std::string& job) {
  MutexLock lock(&mu_);
  Decrement(client_streams_, client);
  if (!job.empty()) Decrement(job_streams_, job);
  --open_streams_;
  if (metrics_) metrics_->SetOpenStreams(open_streams_);
}

absl::Status StreamLimits::Admit(const std::string& job) {
  {
    MutexLock lock(&mu_);
    if (Take(job_in_flight_, job, config_.max_in_flight_per_job)) return absl::OkStatus();
  }
  return Refuse(
      "in_flight_per_job",
      absl::StrCat("job '", job, "' already has the most micro-batches in flight allowed"),
      config_.max_in_flight_per_job);
}

void StreamLimits::Release(const std::string& job) {
  MutexLock lock(&mu_);
  Decrement(job_in_flight_, job);
}

int64_t StreamLimits::open_streams() {
  MutexLock lock(&mu_);
  return open_streams_;
}

int64_t StreamLimits::in_flight(const std::string& job) {
  MutexLock lock(&mu_);
  auto it = job_in_flight_.find(job);
  return it == job_in_flight_.end() ? 0 : it->second;
}

}  // namespace mkd::teacher
