// Which teachers serve which job: a pure function of the pool's state, so
// tests drive it with made-up pools.
//
// Per model id, every serving teacher is shared by all jobs of that model,
// and each teacher's batcher splits its time between them by job weight
// (weighted fair queuing on the server): a job of weight w gets w/Σw of
// every teacher it shares. A job limited to n teachers (max_teachers) gets
// the n least loaded, load being the weight already placed on a teacher
// per unit of its capacity; jobs are placed heaviest first, and a teacher a
// job already had wins ties, so assignments move only when they must.
// Draining and gone teachers serve no one.
#ifndef MKD_COORDINATOR_ASSIGNMENT_H_
#define MKD_COORDINATOR_ASSIGNMENT_H_

#include <map>
#include <string>
#include <vector>

namespace mkd::coordinator {

struct TeacherView {
  std::string address;
  std::string model_id;
  double capacity_tokens_per_s = 0;  // <= 0 reads as 1.
  bool serving = false;
};

struct JobView {
  std::string job_id;
  std::string model_id;
  double weight = 1;
  int max_teachers = 0;              // 0: no limit.
  std::vector<std::string> current;  // Its teachers now (for stickiness).
};

// Job id -> its teachers' addresses, sorted. A job whose model no serving
// teacher has maps to an empty list.
std::map<std::string, std::vector<std::string>> AssignTeachers(
    const std::vector<TeacherView>& teachers, const std::vector<JobView>& jobs);

}  // namespace mkd::coordinator

#endif  // MKD_COORDINATOR_ASSIGNMENT_H_
