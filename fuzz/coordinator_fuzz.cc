// libFuzzer target: the coordinator's messages, driven through the same
// validation and Pool calls as its RPC handlers (coordinator/service.cc),
// on an injected clock.
//
// Input: a sequence of records [op][n][n bytes]. op picks the message
// (RegisterTeacher, TeacherHeartbeat, RegisterJob, JobHeartbeat, Drain) or
// advances the clock by n x 100 ms and ticks; the bytes are the message's
// protobuf encoding. After every record each known job's assignment is
// checked: versions never go back, the teachers are distinct and known to
// the pool, and predictions are finite.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "common/config_yaml.h"
#include "coordinator/pool.h"
#include "coordinator/service.h"
#include "fuzz/fuzz_check.h"

namespace {

namespace v1 = ::maskedkd::v1;
using mkd::coordinator::Pool;

void CheckAssignments(Pool& pool, const std::set<std::string>& jobs,
                      std::map<std::string, uint64_t>& versions) {
  std::set<std::string> known;
  const v1::ListTeachersResponse teachers = pool.ListTeachers();  // Outlives the loop.
  for (const v1::TeacherStatus& t : teachers.teachers()) {
    // Only addresses the service would accept are ever handed to a job.
    Require(mkd::CheckDialAddress(t.info().address(), "address").ok());
    known.insert(t.info().address());
  }
  for (const std::string& job : jobs) {
    std::optional<v1::Assignment> a = pool.AssignmentFor(job);
    if (!a) continue;
    Require(a->job_id() == job);
    Require(a->version() >= versions[job]);
    versions[job] = a->version();
    std::set<std::string> seen;
    for (const v1::TeacherEndpoint& t : a->teachers()) {
      Require(seen.insert(t.address()).second);
      Require(known.count(t.address()) > 0);
    }
    Require(std::isfinite(a->predicted_step_s()) && std::isfinite(a->predicted_bubble()));
    Require(a->micro_batches() >= 0);
  }
  (void)pool.ListJobs();
  (void)pool.Stats();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::Time now = absl::UnixEpoch() + absl::Hours(1);
  mkd::coordinator::PoolOptions options;
  options.settle = absl::ZeroDuration();
  Pool pool(options, [&now] { return now; });
  std::set<std::string> jobs;
  std::map<std::string, uint64_t> versions;
  size_t at = 0;
  while (at + 2 <= size) {
    const uint8_t op = data[at] % 6;
    const size_t n = std::min<size_t>(data[at + 1], size - at - 2);
    const void* body = data + at + 2;
    at += 2 + n;
    switch (op) {
      case 0: {
        v1::RegisterTeacherRequest r;
        if (!r.ParseFromArray(body, static_cast<int>(n))) break;
        if (mkd::coordinator::ValidateTeacherInfo(r.info()).ok()) {
          (void)pool.UpsertTeacher(r.info(), nullptr);
        }
        break;
      }
      case 1: {
        v1::TeacherHeartbeatRequest r;
        if (!r.ParseFromArray(body, static_cast<int>(n))) break;
        if (mkd::coordinator::ValidateTeacherInfo(r.info()).ok() &&
            mkd::coordinator::ValidateTeacherLoad(r.load()).ok()) {
          (void)pool.UpsertTeacher(r.info(), &r.load());
        }
        break;
      }
      case 2: {
        v1::RegisterJobRequest r;
        if (!r.ParseFromArray(body, static_cast<int>(n))) break;
        if (mkd::coordinator::ValidateJobInfo(r.info()).ok()) {
          if (pool.UpsertJob(r.info(), nullptr).ok()) jobs.insert(r.info().job_id());
        }
        break;
      }
      case 3: {
        v1::JobHeartbeatRequest r;
        if (!r.ParseFromArray(body, static_cast<int>(n))) break;
        if (mkd::coordinator::ValidateJobInfo(r.info()).ok() &&
            mkd::coordinator::ValidateJobTimings(r.timings()).ok()) {
          if (pool.UpsertJob(r.info(), &r.timings()).ok()) jobs.insert(r.info().job_id());
        }
        break;
      }
      case 4: {
        const std::string address(static_cast<const char*>(body), n);
        const absl::Status checked = mkd::CheckDialAddress(address, "address");
        // The refusal quotes at most 64 bytes of the address, escaped (up to
        // 4 characters each), on one line.
        Require(checked.message().size() < 64 * 4 + 160 &&
                checked.message().find('\n') == absl::string_view::npos);
        if (checked.ok()) (void)pool.Drain(address);
        break;
      }
      default:
        now += absl::Milliseconds(100) * static_cast<int64_t>(n);
        pool.Tick();
        break;
    }
    CheckAssignments(pool, jobs, versions);
  }
  return 0;
}
