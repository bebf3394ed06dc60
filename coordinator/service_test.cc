// The coordinator as a real gRPC server on loopback, driven by a real
// client: validation, watch streams following the pool, drain, listings
// and /metrics. Leases are short (0.5 s) so expiry happens within the test;
// waits are bounded by stream deadlines.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "common/thread.h"
#include "coordinator/server.h"
#include "coordinator/test_members.h"

namespace mkd::coordinator {
namespace {

using test::Job;
using test::Teacher;

class CoordinatorServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorConfig c;
    c.listen = "127.0.0.1:0";
    c.metrics_listen = "127.0.0.1:0";
    c.heartbeat_s = 0.05;
    c.lease_s = 0.5;
    c.settle_s = 0.1;
    c.tls.insecure = true;   // Plaintext on loopback; tests/tls_test.cc covers TLS.
    c.auth.insecure = true;  // Open; the auth tests below set a pool secret.
    auto s = CoordinatorServer::Start(c);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    stub_ = v1::CoordinatorService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
    beater_ = Thread("mkd-beater", [this] { Heartbeats(); });
  }
  void TearDown() override {
    stop_ = true;
    EXPECT_TRUE(beater_.Join().ok());
    server_->Shutdown();
  }

  // Keeps the members in alive_ heartbeating, as their processes would.
  void Heartbeats() {
    while (!stop_) {
      std::vector<std::string> alive;
      {
        std::lock_guard<std::mutex> lock(mu_);
        alive = alive_;
      }
      for (const std::string& a : alive) {
        grpc::ClientContext ctx;
        v1::TeacherHeartbeatRequest req;
        *req.mutable_info() = Teacher(a);
        v1::TeacherHeartbeatResponse resp;
        stub_->TeacherHeartbeat(&ctx, req, &resp);
        std::lock_guard<std::mutex> lock(mu_);
        states_[a] = resp.state();
      }
      grpc::ClientContext ctx;
      v1::JobHeartbeatRequest req;
      *req.mutable_info() = Job("job");
      v1::JobHeartbeatResponse resp;
      stub_->JobHeartbeat(&ctx, req, &resp);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  void SetAlive(std::vector<std::string> alive) {
    std::lock_guard<std::mutex> lock(mu_);
    alive_ = std::move(alive);
  }

  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::CoordinatorService::Stub> stub_;
  Thread beater_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> alive_;
  std::map<std::string, v1::TeacherState> states_;
};

std::vector<std::string> Addresses(const v1::Assignment& a) {
  std::vector<std::string> out;
  for (const auto& t : a.teachers()) out.push_back(t.address());
  return out;
}

TEST_F(CoordinatorServiceTest, RejectsBadInputNamingTheField) {
  auto expect = [](const grpc::Status& st, grpc::StatusCode code, const std::string& fragment) {
    EXPECT_EQ(st.error_code(), code) << st.error_message();
    EXPECT_NE(st.error_message().find(fragment), std::string::npos) << st.error_message();
  };
  {
    grpc::ClientContext ctx;
    v1::RegisterTeacherRequest req;
    *req.mutable_info() = Teacher("no-port");
    v1::RegisterTeacherResponse resp;
    expect(stub_->RegisterTeacher(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
           "info.address");
  }
  {
    grpc::ClientContext ctx;
    v1::RegisterJobRequest req;
    *req.mutable_info() = Job("j");
    req.mutable_info()->set_weight(0);
    v1::RegisterJobResponse resp;
    expect(stub_->RegisterJob(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT, "info.weight");
  }
  {
    grpc::ClientContext ctx;
    v1::RegisterJobRequest req;
    *req.mutable_info() = Job("j");
    req.mutable_info()->set_world_size(2);
    req.mutable_info()->set_rank(2);
    v1::RegisterJobResponse resp;
    expect(stub_->RegisterJob(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
           "info.rank: 2 is not in [0, world_size 2)");
  }
  {  // Where a member runs is bounded too.
    grpc::ClientContext ctx;
    v1::RegisterJobRequest req;
    *req.mutable_info() = Job("j");
    req.mutable_info()->set_host_id(std::string(4096, 'h'));
    v1::RegisterJobResponse resp;
    expect(stub_->RegisterJob(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
           "info.host_id: is at most 128 bytes");
  }
  {
    grpc::ClientContext ctx;
    v1::RegisterTeacherRequest req;
    *req.mutable_info() = Teacher("127.0.0.1:5000");
    req.mutable_info()->set_host(std::string(300, 'h'));
    v1::RegisterTeacherResponse resp;
    expect(stub_->RegisterTeacher(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
           "info.host: is at most 253 bytes");
  }
  {
    grpc::ClientContext ctx;
    v1::JobHeartbeatRequest req;
    *req.mutable_info() = Job("j");
    req.mutable_timings()->set_student_forward_s(std::nan(""));
    v1::JobHeartbeatResponse resp;
    expect(stub_->JobHeartbeat(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT, "timings");
  }
  {
    // Found by fuzz/coordinator_fuzz: finite but huge, it made the plan's
    // predicted step infinite.
    grpc::ClientContext ctx;
    v1::JobHeartbeatRequest req;
    *req.mutable_info() = Job("j");
    req.mutable_timings()->set_teacher_compute_s(7e306);
    v1::JobHeartbeatResponse resp;
    expect(stub_->JobHeartbeat(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
           "at most 86400 s");
  }
  {
    grpc::ClientContext ctx;
    v1::TeacherHeartbeatRequest req;
    *req.mutable_info() = Teacher("10.0.0.9:1");
    req.mutable_load()->set_tokens_per_s(std::nan(""));
    v1::TeacherHeartbeatResponse resp;
    expect(stub_->TeacherHeartbeat(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
           "load.tokens_per_s");
  }
  {
    grpc::ClientContext ctx;
    v1::TeacherHeartbeatRequest req;
    *req.mutable_info() = Teacher("10.0.0.9:1");
    req.mutable_load()->set_queued(-1);
    v1::TeacherHeartbeatResponse resp;
    expect(stub_->TeacherHeartbeat(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT, "load");
  }
  {
    grpc::ClientContext ctx;
    v1::DrainRequest req;
    req.set_address("10.0.0.1:1");
    v1::DrainResponse resp;
    expect(stub_->Drain(&ctx, req, &resp), grpc::StatusCode::NOT_FOUND, "no teacher at");
  }
  const double invalid_before = server_->metrics().invalid_requests();
  {
    grpc::ClientContext ctx;
    v1::WatchAssignmentRequest req;
    auto reader = stub_->WatchAssignment(&ctx, req);
    v1::Assignment a;
    EXPECT_FALSE(reader->Read(&a));
    expect(reader->Finish(), grpc::StatusCode::INVALID_ARGUMENT, "job_id");
  }
  EXPECT_EQ(server_->metrics().invalid_requests(), invalid_before + 1)
      << "WatchAssignment's refusal counts";
  // Hosts a teacher could register and jobs would dial: refused, each for
  // its reason, quoting at most 64 bytes of what was sent (a 1 MiB address
  // must not come back in the error, past gRPC's metadata limits).
  const std::vector<std::pair<std::string, std::string>> bad = {
      {":5000", "empty host"},
      {"evil\nhost:5000", "control"},
      {"a host:5000", "whitespace"},
      {std::string(100 << 10, 'h') + ":5000", "over 253 bytes"},
      {std::string(1 << 20, 'h') + ":5000", "over 253 bytes"},
      {"10.0.0.1:0", "port must be 1 to 65535"},
      {"10.0.0.1:70000", "port must be 1 to 65535"},
      {"10.0.0.1:+80", "port must be 1 to 65535"},
  };
  for (const auto& [address, why] : bad) {
    for (int rpc = 0; rpc < 2; ++rpc) {
      grpc::ClientContext ctx;
      grpc::Status st;
      if (rpc == 0) {
        v1::RegisterTeacherRequest req;
        *req.mutable_info() = Teacher(address);
        v1::RegisterTeacherResponse resp;
        st = stub_->RegisterTeacher(&ctx, req, &resp);
      } else {
        v1::DrainRequest req;
        req.set_address(address);
        v1::DrainResponse resp;
        st = stub_->Drain(&ctx, req, &resp);
      }
      expect(st, grpc::StatusCode::INVALID_ARGUMENT, why);
      EXPECT_LT(st.error_message().size(), 200u) << "rpc " << rpc << ": " << st.error_message();
      EXPECT_EQ(st.error_message().find('\n'), std::string::npos) << st.error_message();
    }
  }
}

TEST_F(CoordinatorServiceTest, WatchFollowsThePoolThroughJoinDrainAndDeath) {
  SetAlive({"127.0.0.1:7001"});
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::WatchAssignmentRequest req;
  req.set_job_id("job");
  auto reader = stub_->WatchAssignment(&ctx, req);
  // Reads until the assignment lists `want` (earlier versions may show the
  // pool on its way there); false on deadline.
  auto read_until = [&](const std::vector<std::string>& want, v1::Assignment* a) {
    uint64_t version = 0;
    while (reader->Read(a)) {
      EXPECT_GT(a->version(), version) << "versions only grow";
      version = a->version();
      if (Addresses(*a) == want) return true;
    }
    return false;
  };
  v1::Assignment a;
  ASSERT_TRUE(read_until({"127.0.0.1:7001"}, &a));
  EXPECT_EQ(a.job_id(), "job");
  EXPECT_EQ(a.teachers(0).model_id(), "vit@1234");
  EXPECT_EQ(a.micro_batches(), 1) << "exploration starts at m = 1";

  SetAlive({"127.0.0.1:7001", "127.0.0.1:7002"});
  ASSERT_TRUE(read_until({"127.0.0.1:7001", "127.0.0.1:7002"}, &a));

  {
    grpc::ClientContext dctx;
    v1::DrainRequest dreq;
    dreq.set_address("127.0.0.1:7001");
    v1::DrainResponse dresp;
    ASSERT_TRUE(stub_->Drain(&dctx, dreq, &dresp).ok());
    EXPECT_EQ(dresp.state(), v1::TEACHER_STATE_DRAINING);
  }
  ASSERT_TRUE(read_until({"127.0.0.1:7002"}, &a));
  // The drained teacher hears it on its next heartbeat.
  for (int i = 0; i < 100; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (states_["127.0.0.1:7001"] == v1::TEACHER_STATE_DRAINING) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(states_["127.0.0.1:7001"], v1::TEACHER_STATE_DRAINING);
  }

  SetAlive({});  // Both stop: after the lease the job waits, saying why.
  ASSERT_TRUE(read_until({}, &a));
  EXPECT_NE(a.waiting_reason().find("vit@1234"), std::string::npos);
  ctx.TryCancel();
}

TEST_F(CoordinatorServiceTest, ListsThePoolAndExportsMetrics) {
  SetAlive({"127.0.0.1:7001"});
  v1::ListJobsResponse jobs;
  for (int i = 0; i < 200 && (jobs.jobs_size() == 0 || jobs.jobs(0).teachers_size() == 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    grpc::ClientContext ctx;
    stub_->ListJobs(&ctx, v1::ListJobsRequest(), &jobs);
  }
  ASSERT_EQ(jobs.jobs_size(), 1);
  EXPECT_EQ(jobs.jobs(0).info().job_id(), "job");
  EXPECT_EQ(jobs.jobs(0).teachers(0), "127.0.0.1:7001");
  grpc::ClientContext ctx;
  v1::ListTeachersResponse teachers;
  ASSERT_TRUE(stub_->ListTeachers(&ctx, v1::ListTeachersRequest(), &teachers).ok());
  ASSERT_EQ(teachers.teachers_size(), 1);
  EXPECT_EQ(teachers.teachers(0).state(), v1::TEACHER_STATE_SERVING);
  EXPECT_EQ(teachers.teachers(0).jobs(0), "job");

  httplib::Client http("127.0.0.1", server_->metrics_port());
  std::string body;
  for (int i = 0; i < 100; ++i) {  // The ticker refreshes the gauges.
    auto res = http.Get("/metrics");
    ASSERT_TRUE(res);
    body = res->body;
    if (body.find("mkd_coordinator_assignments 1") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(body.find("mkd_coordinator_teachers{state=\"serving\"} 1"), std::string::npos) << body;
  EXPECT_NE(body.find("mkd_coordinator_jobs 1"), std::string::npos) << body;
  EXPECT_NE(body.find("mkd_coordinator_assignments 1"), std::string::npos) << body;
  EXPECT_NE(body.find("mkd_coordinator_planned_micro_batches{job_id=\"job\"} 1"), std::string::npos)
      << body;
}

}  // namespace
}  // namespace mkd::coordinator
