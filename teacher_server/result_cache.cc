#include "teacher_server/result_cache.h"

namespace mkd::teacher {

ResultCache::Lookup ResultCache::Begin(const std::string& job, uint64_t id, AnswerFn waiter,
                                       Answer* cached) {
  std::lock_guard<std::mutex> lock(mu_);
  JobState& state = jobs_[job];
  auto [it, inserted] = state.entries.try_emplace(id);
  if (!inserted && it->second.done) {
    *cached = it->second.answer;
    return Lookup::kDone;
  }
  it->second.waiters.push_back(std::move(waiter));
  return inserted ? Lookup::kNew : Lookup::kWaiting;
}

void ResultCache::Complete(const std::string& job, uint64_t id, Answer answer) {
  std::vector<AnswerFn> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    JobState& state = jobs_[job];
    auto it = state.entries.find(id);
    if (it == state.entries.end()) return;
    waiters.swap(it->second.waiters);
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
