// The teacher and job descriptions the coordinator's gRPC tests register
// (service_test, auth_test): valid, one model, nothing else set.
#ifndef MKD_COORDINATOR_TEST_MEMBERS_H_
#define MKD_COORDINATOR_TEST_MEMBERS_H_

#include <string>

#include "maskedkd/v1/coordinator.pb.h"

namespace mkd::coordinator::test {

inline maskedkd::v1::TeacherInfo Teacher(const std::string& address) {
  maskedkd::v1::TeacherInfo t;
  t.set_address(address);
  t.set_model_id("vit@1234");
  t.set_capacity_tokens_per_s(1000);
  return t;
}

inline maskedkd::v1::JobInfo Job(const std::string& id) {
  maskedkd::v1::JobInfo j;
  j.set_job_id(id);
  j.set_model_id("vit@1234");
  j.set_weight(1);
  j.set_batch_size(32);
  j.set_kept_patches(8);
  return j;
}

}  // namespace mkd::coordinator::test

#endif  // MKD_COORDINATOR_TEST_MEMBERS_H_
