// The coordinator's roles over real gRPC on loopback, plaintext with pool
// tokens (tests/pool_auth_test.cc repeats the attacks against the real
// processes, with tokens and under mutual TLS with role certificates).
// Every attack an outsider, a job or a teacher could make is refused with
// its fixed message and counted by reason; the rightful calls pass.
#include <gtest/gtest.h>

#include <fstream>

#include "coordinator/server.h"
#include "coordinator/test_members.h"
#include "rpc/job_token.h"
#include "rpc/pool_auth.h"

namespace mkd::coordinator {
namespace {

using test::Job;
using test::Teacher;

constexpr char kSecret[] = "coordinator-auth-test-secret-of-32-bytes-or-more";

class CoordinatorAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string file = ::testing::TempDir() + "/coord_pool_secret";
    std::ofstream(file) << kSecret << "\n";
    CoordinatorConfig c;
    c.listen = "127.0.0.1:0";
    c.metrics_listen = "";
    c.tls.insecure = true;
    c.auth.pool_secret_file = file;
    auto s = CoordinatorServer::Start(c);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    stub_ = v1::CoordinatorService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override { server_->Shutdown(); }

  static std::string Token(rpc::Role role, const std::string& name,
                           absl::Duration ttl = absl::Hours(1)) {
    return rpc::MakePoolToken(kSecret, role, name, absl::Now() + ttl);
  }

  grpc::Status RegisterTeacher(const std::string& address, const std::string& token) {
    grpc::ClientContext ctx;
    rpc::AddTokenMetadata(&ctx, token);
    v1::RegisterTeacherRequest req;
    *req.mutable_info() = Teacher(address);
    v1::RegisterTeacherResponse resp;
    return stub_->RegisterTeacher(&ctx, req, &resp);
  }
  grpc::Status TeacherHeartbeat(const std::string& address, const std::string& model,
                                const std::string& token) {
    grpc::ClientContext ctx;
    rpc::AddTokenMetadata(&ctx, token);
    v1::TeacherHeartbeatRequest req;
    *req.mutable_info() = Teacher(address);
    req.mutable_info()->set_model_id(model);
    v1::TeacherHeartbeatResponse resp;
    return stub_->TeacherHeartbeat(&ctx, req, &resp);
  }
  grpc::Status RegisterJob(const std::string& job, const std::string& token,
                           uint64_t instance = 0) {
    grpc::ClientContext ctx;
    rpc::AddTokenMetadata(&ctx, token);
    v1::RegisterJobRequest req;
    *req.mutable_info() = Job(job);
    req.mutable_info()->set_instance(instance);
    v1::RegisterJobResponse resp;
    return stub_->RegisterJob(&ctx, req, &resp);
  }
  grpc::Status Drain(const std::string& address, const std::string& token) {
    grpc::ClientContext ctx;
    rpc::AddTokenMetadata(&ctx, token);
    v1::DrainRequest req;
    req.set_address(address);
    v1::DrainResponse resp;
    return stub_->Drain(&ctx, req, &resp);
  }
  grpc::Status ListJobs(const std::string& token, v1::ListJobsResponse* resp) {
    grpc::ClientContext ctx;
    rpc::AddTokenMetadata(&ctx, token);
    return stub_->ListJobs(&ctx, v1::ListJobsRequest(), resp);
  }
  grpc::Status ListTeachers(const std::string& token, v1::ListTeachersResponse* resp) {
    grpc::ClientContext ctx;
    rpc::AddTokenMetadata(&ctx, token);
    return stub_->ListTeachers(&ctx, v1::ListTeachersRequest(), resp);
  }
  // A refused watch ends at once; an admitted one stays open (the job has
  // no assignment to send yet) until the 1 s deadline.
  grpc::Status Watch(const std::string& job, const std::string& token) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    rpc::AddTokenMetadata(&ctx, token);
    v1::WatchAssignmentRequest req;
    req.set_job_id(job);
    auto reader = stub_->WatchAssignment(&ctx, req);
    v1::Assignment a;
    while (reader->Read(&a)) {
    }
    const grpc::Status st = reader->Finish();
    return st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ? grpc::Status::OK : st;
  }
  double Refusals(const std::string& reason) { return server_->metrics().auth_refusals(reason); }

  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::CoordinatorService::Stub> stub_;
};

void ExpectRefused(const grpc::Status& st, grpc::StatusCode code, const std::string& message) {
  EXPECT_EQ(st.error_code(), code) << st.error_message();
  EXPECT_EQ(st.error_message(), message);
}

TEST_F(CoordinatorAuthTest, OnlyATeacherJoinsAndOnlyAtTheAddressItsTokenNames) {
  const std::string real = "10.0.0.1:50051";
  ExpectRefused(RegisterTeacher(real, ""), grpc::StatusCode::UNAUTHENTICATED,
                "a teacher token or certificate is required");
  ExpectRefused(RegisterTeacher(real, Token(rpc::Role::kJob, "job-a")),
                grpc::StatusCode::PERMISSION_DENIED, "a job may not act as teacher");
  ExpectRefused(RegisterTeacher(real, rpc::MakeJobToken(kSecret, "job-a")),
                grpc::StatusCode::PERMISSION_DENIED, "a job token may not act as teacher");
  ExpectRefused(RegisterTeacher(real, Token(rpc::Role::kTeacher, "10.0.0.9:50051")),
                grpc::StatusCode::PERMISSION_DENIED,
                "the teacher's credentials do not name this address");
  ASSERT_TRUE(RegisterTeacher(real, Token(rpc::Role::kTeacher, real)).ok());
  // A heartbeat claiming the real teacher's address under another model,
  // with another teacher's token: refused, the pool keeps the real one.
  ExpectRefused(TeacherHeartbeat(real, "evil@0000", Token(rpc::Role::kTeacher, "10.0.0.9")),
                grpc::StatusCode::PERMISSION_DENIED,
                "the teacher's credentials do not name this address");
  v1::ListTeachersResponse teachers;
  ASSERT_TRUE(ListTeachers(Token(rpc::Role::kOperator, "ops"), &teachers).ok());
  ASSERT_EQ(teachers.teachers_size(), 1);
  EXPECT_EQ(teachers.teachers(0).info().model_id(), "vit@1234");
  // A host-wide token ("10.0.0.2": any port) and a pool-wide one ("*").
  EXPECT_TRUE(RegisterTeacher("10.0.0.2:7000", Token(rpc::Role::kTeacher, "10.0.0.2")).ok());
  EXPECT_FALSE(RegisterTeacher("10.0.0.3:7000", Token(rpc::Role::kTeacher, "10.0.0.2")).ok());
  EXPECT_TRUE(RegisterTeacher("10.0.0.4:7000", Token(rpc::Role::kTeacher, "*")).ok());
  EXPECT_EQ(Refusals("missing"), 1);
  EXPECT_EQ(Refusals("role"), 2);
  EXPECT_EQ(Refusals("identity"), 3);
}

TEST_F(CoordinatorAuthTest, OnlyAnOperatorDrains) {
  const std::string real = "10.0.0.1:50051";
  ASSERT_TRUE(RegisterTeacher(real, Token(rpc::Role::kTeacher, real)).ok());
  ExpectRefused(Drain(real, ""), grpc::StatusCode::UNAUTHENTICATED,
                "an operator token or certificate is required");
  ExpectRefused(Drain(real, Token(rpc::Role::kTeacher, real)), grpc::StatusCode::PERMISSION_DENIED,
                "a teacher may not act as operator");
  ExpectRefused(Drain(real, Token(rpc::Role::kJob, "job-a")), grpc::StatusCode::PERMISSION_DENIED,
                "a job may not act as operator");
  v1::ListTeachersResponse teachers;
  ASSERT_TRUE(ListTeachers(Token(rpc::Role::kOperator, "ops"), &teachers).ok());
  EXPECT_EQ(teachers.teachers(0).state(), v1::TEACHER_STATE_SERVING);
  EXPECT_TRUE(Drain(real, Token(rpc::Role::kOperator, "ops")).ok());
  ASSERT_TRUE(ListTeachers(Token(rpc::Role::kOperator, "ops"), &teachers).ok());
  EXPECT_EQ(teachers.teachers(0).state(), v1::TEACHER_STATE_DRAINING);
}

TEST_F(CoordinatorAuthTest, AJobActsOnlyAsItselfAndSeesOnlyItself) {
  ASSERT_TRUE(RegisterTeacher("10.0.0.1:1", Token(rpc::Role::kTeacher, "*")).ok());
  ASSERT_TRUE(RegisterJob("job-a", Token(rpc::Role::kJob, "job-a")).ok());
  ASSERT_TRUE(RegisterJob("job-b", rpc::MakeJobToken(kSecret, "job-b")).ok());  // Today's kind.
  ExpectRefused(RegisterJob("job-a", ""), grpc::StatusCode::UNAUTHENTICATED,
                "a job token is required");
  // Job b overwriting job a's description.
  ExpectRefused(RegisterJob("job-a", Token(rpc::Role::kJob, "job-b")),
                grpc::StatusCode::PERMISSION_DENIED, "the job token does not grant this job");
  ExpectRefused(RegisterJob("job-a", rpc::MakeJobToken(kSecret, "job-b")),
                grpc::StatusCode::PERMISSION_DENIED, "the job token does not grant this job");
  ExpectRefused(RegisterJob("job-a", Token(rpc::Role::kTeacher, "*")),
                grpc::StatusCode::PERMISSION_DENIED, "a teacher may not act as job");
  ExpectRefused(Watch("job-a", Token(rpc::Role::kJob, "job-b")),
                grpc::StatusCode::PERMISSION_DENIED, "the job token does not grant this job");
  ExpectRefused(Watch("job-a", ""), grpc::StatusCode::UNAUTHENTICATED, "a job token is required");
  EXPECT_TRUE(Watch("job-a", Token(rpc::Role::kJob, "job-a")).ok());

  v1::ListJobsResponse jobs;
  ASSERT_TRUE(ListJobs(Token(rpc::Role::kOperator, "ops"), &jobs).ok());
  EXPECT_EQ(jobs.jobs_size(), 2);
  ASSERT_TRUE(ListJobs(Token(rpc::Role::kJob, "job-a"), &jobs).ok());
  ASSERT_EQ(jobs.jobs_size(), 1);
  EXPECT_EQ(jobs.jobs(0).info().job_id(), "job-a");
  v1::ListTeachersResponse teachers;
  ASSERT_TRUE(ListTeachers(Token(rpc::Role::kJob, "job-a"), &teachers).ok());
  for (const v1::TeacherStatus& t : teachers.teachers()) {
    for (const std::string& j : t.jobs()) EXPECT_EQ(j, "job-a");
  }
  ExpectRefused(ListJobs(Token(rpc::Role::kTeacher, "*"), &jobs),
                grpc::StatusCode::PERMISSION_DENIED, "a teacher may not list the pool");
  ExpectRefused(ListJobs("", &jobs), grpc::StatusCode::UNAUTHENTICATED,
                "a token or a role certificate is required");
  ExpectRefused(ListJobs(rpc::MakeJobToken(kSecret, "job-a"), &jobs),
                grpc::StatusCode::PERMISSION_DENIED, "this call needs a pool token (mkd token)");
}

// The rightful token in a second process does not take over a live job:
// refused until the first's lease ends, and counted.
TEST_F(CoordinatorAuthTest, AJobsTokenInAnotherProcessDoesNotTakeOverItsLiveLease) {
  const std::string token = Token(rpc::Role::kJob, "job-a");
  ASSERT_TRUE(RegisterJob("job-a", token, /*instance=*/11).ok());
  ExpectRefused(RegisterJob("job-a", token, /*instance=*/12), grpc::StatusCode::FAILED_PRECONDITION,
                Pool::kTakenMessage);
  EXPECT_TRUE(RegisterJob("job-a", token, /*instance=*/11).ok());
  EXPECT_EQ(Refusals("instance"), 1);
}

TEST_F(CoordinatorAuthTest, ForgedAndExpiredTokensAreRefused) {
  const std::string real = "10.0.0.1:50051";
  const std::string other_secret = "another-secret-of-at-least-32-bytes-long!!";
  ExpectRefused(RegisterTeacher(real, rpc::MakePoolToken(other_secret, rpc::Role::kTeacher, real,
                                                         absl::Now() + absl::Hours(1))),
                grpc::StatusCode::UNAUTHENTICATED, "the token is not valid");
  // A valid token with its role edited from job to operator.
  std::string edited = Token(rpc::Role::kJob, "job-a");
  edited.replace(edited.find(".job."), 5, ".operator.");
  ExpectRefused(Drain(real, edited), grpc::StatusCode::UNAUTHENTICATED, "the token is not valid");
  ExpectRefused(Drain(real, "mkdt2.garbage"), grpc::StatusCode::UNAUTHENTICATED,
                "the token is not valid");
  ExpectRefused(RegisterTeacher(real, Token(rpc::Role::kTeacher, real, -absl::Seconds(1))),
                grpc::StatusCode::UNAUTHENTICATED, "the token has expired");
  EXPECT_EQ(Refusals("invalid"), 3);
  EXPECT_EQ(Refusals("expired"), 1);
  // The refusals name nothing of the token or the secret.
  const grpc::Status st = RegisterTeacher(real, Token(rpc::Role::kTeacher, "10.9.9.9"));
  EXPECT_EQ(st.error_message().find("10.9.9.9"), std::string::npos);
  EXPECT_EQ(st.error_message().find(kSecret), std::string::npos);
  EXPECT_NE(server_->metrics().Serialize().find(
                "mkd_coordinator_auth_refusals_total{reason=\"identity\"} 1"),
            std::string::npos);
}

}  // namespace
}  // namespace mkd::coordinator
