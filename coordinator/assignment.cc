#include "coordinator/assignment.h"

#include <algorithm>
#include <set>

namespace mkd::coordinator {

std::map<std::string, std::vector<std::string>> AssignTeachers(
    const std::vector<TeacherView>& teachers, const std::vector<JobView>& jobs) {
  std::map<std::string, std::vector<const TeacherView*>> by_model;
  for (const TeacherView& t : teachers) {
    if (t.serving) by_model[t.model_id].push_back(&t);
  }
  // Heaviest first (then by id): a limited heavy job picks before light ones.
  std::vector<const JobView*> order;
  for (const JobView& j : jobs) order.push_back(&j);
  std::sort(order.begin(), order.end(), [](const JobView* a, const JobView* b) {
    return a->weight != b->weight ? a->weight > b->weight : a->job_id < b->job_id;
  });
  std::map<std::string, double> placed;  // Teacher -> weight placed on it.
  std::map<std::string, std::vector<std::string>> out;
  for (const JobView* job : order) {
    std::vector<std::string>& mine = out[job->job_id];
    auto it = by_model.find(job->model_id);
    if (it == by_model.end()) continue;
    std::vector<const TeacherView*> pool = it->second;
    const size_t want = job->max_teachers > 0
                            ? std::min<size_t>(pool.size(), static_cast<size_t>(job->max_teachers))
                            : pool.size();
    const std::set<std::string> had(job->current.begin(), job->current.end());
    auto load = [&](const TeacherView* t) {
      return placed[t->address] / (t->capacity_tokens_per_s > 0 ? t->capacity_tokens_per_s : 1.0);
    };
    std::sort(pool.begin(), pool.end(), [&](const TeacherView* a, const TeacherView* b) {
      const double la = load(a), lb = load(b);
      if (la != lb) return la < lb;
      const bool ha = had.count(a->address) > 0, hb = had.count(b->address) > 0;
      if (ha != hb) return ha;
      return a->address < b->address;
    });
    for (size_t i = 0; i < want; ++i) {
      mine.push_back(pool[i]->address);
      placed[pool[i]->address] += job->weight > 0 ? job->weight : 1.0;
    }
    std::sort(mine.begin(), mine.end());
  }
  return out;
}

}  // namespace mkd::coordinator
