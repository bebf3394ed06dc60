#include "teacher_server/result_cache.h"

#define XXH_INLINE_ALL  // Header-only: nothing to link.
#include <xxhash.h>

namespace mkd::teacher {

uint64_t RequestDigest(const maskedkd::v1::DistillRequest& r, absl::string_view payload) {
  // The payload is megabytes: XXH3 hashes it at memory speed; the rest
  // seeds it.
  const uint64_t shape[] = {
      static_cast<uint64_t>(r.micro_batch_size()) << 32 | static_cast<uint32_t>(r.kept_patches()),
      static_cast<uint64_t>(r.payload_kind()) << 16 |
          static_cast<uint64_t>(r.payload_dtype()) << 1 | (r.want_features() ? 1 : 0),
      XXH3_64bits(r.kept_indices().data(), r.kept_indices().size())};
  return XXH3_64bits_withSeed(payload.data(), payload.size(), XXH3_64bits(shape, sizeof(shape)));
}

ResultCache::Lookup ResultCache::Begin(const std::string& job, uint64_t id, uint64_t digest,
                                       AnswerFn waiter, Answer* cached) {
  MutexLock lock(&mu_);
  const absl::Time now = clock_();
  ForgetIdleJobs(now, job);
  JobState& state = jobs_[job];
  state.last_used = now;
  auto [it, inserted] = state.entries.try_emplace(id);
  if (inserted) it->second.digest = digest;
  if (!inserted && it->second.digest != digest) return Lookup::kMismatch;
  if (!inserted && it->second.done) {
    *cached = it->second.answer;
    return Lookup::kDone;
  }
  it->second.waiters.push_back(std::move(waiter));
  if (inserted) ++state.in_flight;
  return inserted ? Lookup::kNew : Lookup::kWaiting;
}

void ResultCache::ForgetIdleJobs(absl::Time now, const std::string& keep) {
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    const bool idle = it->second.in_flight == 0 && now - it->second.last_used >= idle_;
    it = idle && it->first != keep ? jobs_.erase(it) : std::next(it);
  }
}

int64_t ResultCache::jobs() {
  MutexLock lock(&mu_);
  ForgetIdleJobs(clock_(), "");
  return static_cast<int64_t>(jobs_.size());
}

void ResultCache::Complete(const std::string& job, uint64_t id, Answer answer) {
  std::vector<AnswerFn> waiters;
  {
    MutexLock lock(&mu_);
    auto job_it = jobs_.find(job);
    if (job_it == jobs_.end()) return;
    JobState& state = job_it->second;
    auto it = state.entries.find(id);
    if (it == state.entries.end()) return;
    waiters.swap(it->second.waiters);
    --state.in_flight;
    state.last_used = clock_();
    if (answer->code() != 0 || window_ == 0) {
      state.entries.erase(it);
    } else {
      it->second.done = true;
      it->second.answer = answer;
      state.done_order.push_back(id);
      while (static_cast<int64_t>(state.done_order.size()) > window_) {
        state.entries.erase(state.done_order.front());
        state.done_order.pop_front();
      }
    }
  }
  for (AnswerFn& w : waiters) w(answer);
}

}  // namespace mkd::teacher
