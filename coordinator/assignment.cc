#include "coordinator/assignment.h"

#include <algorithm>
#include <set>

namespace mkd::coordinator {

std::map<std::string, std::vector<std::string>> AssignTeachers(
    const std::vector<TeacherView>& teachers, const std::vector<JobView>& jobs) {
  // Teachers by index: the weight placed on each is a vector, not a map
  // keyed by address, since it is read in every comparison below.
  std::map<std::string, std::vector<size_t>> by_model;
  for (size_t i = 0; i < teachers.size(); ++i) {
    if (teachers[i].serving) by_model[teachers[i].model_id].push_back(i);
  }
  // Heaviest first (then by id): a limited heavy job picks before light ones.
  std::vector<const JobView*> order;
  for (const JobView& j : jobs) order.push_back(&j);
  std::sort(order.begin(), order.end(), [](const JobView* a, const JobView* b) {
    return a->weight != b->weight ? a->weight > b->weight : a->job_id < b->job_id;
  });
  std::vector<double> placed(teachers.size(), 0.0);  // Weight placed on each teacher.
  std::map<std::string, std::vector<std::string>> out;
  for (const JobView* job : order) {
    std::vector<std::string>& mine = out[job->job_id];
    auto it = by_model.find(job->model_id);
    if (it == by_model.end()) continue;
    std::vector<size_t> pool = it->second;
    const size_t want = job->max_teachers > 0
                            ? std::min<size_t>(pool.size(), static_cast<size_t>(job->max_teachers))
                            : pool.size();
    auto load = [&](size_t t) {
      const double capacity = teachers[t].capacity_tokens_per_s;
      return placed[t] / (capacity > 0 ? capacity : 1.0);
    };
    // A job keeps the teachers it has when loads tie (no needless moves).
    auto had = [&](size_t t) {
      return std::find(job->current.begin(), job->current.end(), teachers[t].address) !=
             job->current.end();
    };
    auto before = [&](size_t a, size_t b) {
      const double la = load(a), lb = load(b);
      if (la != lb) return la < lb;
      const bool ha = had(a), hb = had(b);
      if (ha != hb) return ha;
      return teachers[a].address < teachers[b].address;
    };
    // Only the `want` least loaded are needed: O(T log want), not O(T log T).
    std::partial_sort(pool.begin(), pool.begin() + static_cast<std::ptrdiff_t>(want), pool.end(),
                      before);
    for (size_t i = 0; i < want; ++i) {
      mine.push_back(teachers[pool[i]].address);
      placed[pool[i]] += job->weight > 0 ? job->weight : 1.0;
    }
    std::sort(mine.begin(), mine.end());
  }
  return out;
}

}  // namespace mkd::coordinator
