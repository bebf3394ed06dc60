#include "teacher_server/batch_queue.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace mkd::teacher {

absl::StatusOr<uint64_t> BatchQueue::Push(QueuedWork work) {
  ForgetIdleJobs(work.enqueued);
  if (total_ >= options_.max_queued) {
    return absl::ResourceExhaustedError(absl::StrCat("teacher queue is full (", options_.max_queued,
                                                     " micro-batches waiting); retry later"));
  }
  int64_t& mine = queued_[work.job_id];
  if (mine >= options_.max_queued_per_job) {
    return absl::ResourceExhaustedError(absl::StrCat("job '", work.job_id, "' already has ", mine,
                                                     " micro-batches queued (the per-job limit)"));
  }
  // A job that was idle joins at the current virtual time: it gets its fair
  // share from now on, not credit for the time it sent nothing. A short gap
  // (between a job's training steps) keeps its place.
  auto emptied = emptied_.find(work.job_id);
  const bool short_gap =
      emptied != emptied_.end() && work.enqueued - emptied->second < options_.fair_share_grace;
  if (mine == 0 && !short_gap) {
    double floor = std::numeric_limits<double>::infinity();
    for (const auto& [job, n] : queued_) {
      if (n > 0 && job != work.job_id) floor = std::min(floor, served_[job]);
    }
    double& served = served_[work.job_id];
    if (floor != std::numeric_limits<double>::infinity()) served = std::max(served, floor);
  }
  if (!(work.weight > 0)) work.weight = 1.0;
  ++mine;
  ++total_;
  last_push_[work.job_id] = work.enqueued;
  work.ticket = next_ticket_++;
  const uint64_t ticket = work.ticket;
  Bucket& bucket = buckets_[work.kept_patches];
  bucket.tokens += work.tokens();
  bucket.by_job[work.job_id].push_back(std::move(work));
  return ticket;
}

void BatchQueue::ForgetIdleJobs(absl::Time now) {
  for (auto it = last_push_.begin(); it != last_push_.end();) {
    const std::string& job = it->first;
    if (queued_[job] == 0 && now - it->second >= options_.job_idle) {
      queued_.erase(job);
      served_.erase(job);
      emptied_.erase(job);
      it = last_push_.erase(it);
    } else {
      ++it;
    }
  }
}

std::vector<QueuedWork> BatchQueue::TakeExpired(absl::Time now) {
  std::vector<QueuedWork> expired;
  for (auto bit = buckets_.begin(); bit != buckets_.end();) {
    Bucket& bucket = bit->second;
    for (auto jit = bucket.by_job.begin(); jit != bucket.by_job.end();) {
      auto& q = jit->second;
      for (auto it = q.begin(); it != q.end();) {
        if (it->deadline <= now) {
          bucket.tokens -= it->tokens();
          --queued_[it->job_id];
          --total_;
          expired.push_back(std::move(*it));
          it = q.erase(it);
        } else {
          ++it;
        }
      }
      jit = q.empty() ? bucket.by_job.erase(jit) : std::next(jit);
    }
    bit = bucket.by_job.empty() ? buckets_.erase(bit) : std::next(bit);
  }
  return expired;
}

absl::Time BatchQueue::Oldest(const Bucket& b) const {
  absl::Time oldest = absl::InfiniteFuture();
  for (const auto& [job, q] : b.by_job) oldest = std::min(oldest, q.front().enqueued);
  return oldest;
}

std::vector<QueuedWork> BatchQueue::TakeBatch(absl::Time now, bool drain, absl::Time* wake_at) {
  *wake_at = absl::InfiniteFuture();
  // Among buckets that are due, serve the one whose oldest work is oldest:
  // FIFO between different k, so no k waits behind a busy one forever.
  auto chosen = buckets_.end();
  absl::Time chosen_oldest = absl::InfiniteFuture();
  for (auto it = buckets_.begin(); it != buckets_.end(); ++it) {
    const absl::Time oldest = Oldest(it->second);
    const bool full = it->second.tokens >= options_.max_tokens_per_batch;
    const bool waited = now - oldest >= options_.max_queue_delay;
    // Waiting for company must not cost anyone their deadline: a request
    // whose timeout ends before the delay would runs at once.
    absl::Time earliest_deadline = absl::InfiniteFuture();
    for (const auto& [job, q] : it->second.by_job) {
      for (const auto& w : q) earliest_deadline = std::min(earliest_deadline, w.deadline);
    }
    const bool urgent = earliest_deadline <= oldest + options_.max_queue_delay;
    const bool alone = active_streams_ <= 1;
    if (drain || full || waited || urgent || alone) {
      if (oldest < chosen_oldest) {
        chosen = it;
        chosen_oldest = oldest;
      }
    } else {
      // Not due: waiting may still fill it, which is what the delay buys.
      *wake_at = std::min(*wake_at, oldest + options_.max_queue_delay);
    }
    for (const auto& [job, q] : it->second.by_job) {
      for (const auto& w : q) *wake_at = std::min(*wake_at, w.deadline);
    }
  }
  std::vector<QueuedWork> batch;
  if (chosen == buckets_.end()) return batch;

  Bucket& bucket = chosen->second;
  int64_t tokens = 0;
  while (!bucket.by_job.empty()) {
    // The job that has been served least goes next (ties: by name, so the
    // order is deterministic).
    auto next = bucket.by_job.begin();
    for (auto it = bucket.by_job.begin(); it != bucket.by_job.end(); ++it) {
      if (served_[it->first] < served_[next->first]) next = it;
    }
    QueuedWork& w = next->second.front();
    // A batch always takes its first work, even if that alone is over the
    // budget (validation bounds b, so this stays bounded too).
    if (!batch.empty() && tokens + w.tokens() > options_.max_tokens_per_batch) break;
    tokens += w.tokens();
    served_[w.job_id] += static_cast<double>(w.tokens()) / w.weight;
    bucket.tokens -= w.tokens();
    if (--queued_[w.job_id] == 0) emptied_[w.job_id] = now;
    --total_;
    batch.push_back(std::move(w));
    next->second.pop_front();
    if (next->second.empty()) bucket.by_job.erase(next);
  }
  if (bucket.by_job.empty()) buckets_.erase(chosen);
  *wake_at = now;  // More may be due right away.
  return batch;
}

double BatchQueue::served_tokens(const std::string& job) const {
  auto it = served_.find(job);
  return it == served_.end() ? 0 : it->second;
}

}  // namespace mkd::teacher
