// The attacks of an outsider, a job and a teacher on a real pool, each a
// real process on loopback: a real mkd-coordinator and a real mkd-teacher
// that joined it; the attacker is this process, with its own gRPC client.
// Twice: on plaintext with pool tokens, and under mutual TLS with role
// certificates (scripts/make_certs.sh role). Each attack is refused with
// its fixed message and counted by reason in the coordinator's /metrics
// (checked with promtool); the rightful operator's drain works and the
// real teacher leaves the pool.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "maskedkd/v1/coordinator.grpc.pb.h"
#include "rpc/pool_auth.h"
#include "rpc/transport_security.h"
#include "tests/pool_util.h"

namespace mkd::pool_test {
namespace {

namespace v1 = ::maskedkd::v1;

class PoolTrustTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { WriteTeacher("trust", 1, 16, 5); }

  // One client identity: its TLS options and token ("" for none).
  struct Client {
    TlsOptions tls;
    std::string token;
  };

  std::unique_ptr<v1::CoordinatorService::Stub> Stub(const Proc& c, const Client& who) {
    auto channel = rpc::MakeChannel(c.address(), who.tls, nullptr);
    EXPECT_TRUE(channel.ok()) << channel.status();
    return v1::CoordinatorService::NewStub(*channel);
  }

  // A call as `who`: its token, and a deadline.
  static void Prepare(grpc::ClientContext* ctx, const Client& who) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    rpc::AddTokenMetadata(ctx, who.token);
  }
  static grpc::Status RegisterTeacher(v1::CoordinatorService::Stub* stub, const Client& who,
                                      const std::string& address) {
    grpc::ClientContext ctx;
    Prepare(&ctx, who);
    v1::RegisterTeacherRequest req;
    req.mutable_info()->set_address(address);
    req.mutable_info()->set_model_id("pool_trust@0000");
    req.mutable_info()->set_capacity_tokens_per_s(1e9);
    v1::RegisterTeacherResponse resp;
    return stub->RegisterTeacher(&ctx, req, &resp);
  }
  static grpc::Status Drain(v1::CoordinatorService::Stub* stub, const Client& who,
                            const std::string& address) {
    grpc::ClientContext ctx;
    Prepare(&ctx, who);
    v1::DrainRequest req;
    req.set_address(address);
    v1::DrainResponse resp;
    return stub->Drain(&ctx, req, &resp);
  }
  static grpc::Status RegisterJob(v1::CoordinatorService::Stub* stub, const Client& who,
                                  const std::string& job) {
    grpc::ClientContext ctx;
    Prepare(&ctx, who);
    v1::RegisterJobRequest req;
    req.mutable_info()->set_job_id(job);
    req.mutable_info()->set_model_id("pool_trust@0000");
    req.mutable_info()->set_weight(1000);
    req.mutable_info()->set_batch_size(1);
    req.mutable_info()->set_kept_patches(1);
    v1::RegisterJobResponse resp;
    return stub->RegisterJob(&ctx, req, &resp);
  }

  static void ExpectRefused(const grpc::Status& st, grpc::StatusCode code,
                            const std::string& message) {
    EXPECT_EQ(st.error_code(), code) << st.error_message();
    EXPECT_EQ(st.error_message(), message);
  }

  // The coordinator's refusals by reason, and the exposition checked by
  // promtool.
  static double Refusals(const Proc& c, const std::string& reason) {
    const std::string text = Scrape(c.metrics_port);
    EXPECT_EQ(Promtool(text, "trust_metrics"), "");
    return MetricValue(text, "mkd_coordinator_auth_refusals_total{reason=\"" + reason + "\"}");
  }
};

TEST_F(PoolTrustTest, OnPlaintextEveryAttackIsRefusedAndCounted) {
  const std::string secret = Tmp("trust_secret");
  std::ofstream(secret) << "pool-trust-test-secret-of-at-least-32-bytes\n";
  const std::vector<std::string> sets = {"tls.insecure=true", "auth.pool_secret_file=" + secret};
  Proc c = StartCoordinator("trust_coord", 0, sets);
  ASSERT_GT(c.port, 0);
  Proc t = StartTeacher("trust", "trust_t", c.address(), sets);  // Signs its own token.
  ASSERT_GT(t.port, 0);
  const std::string key = "pool-trust-test-secret-of-at-least-32-bytes";
  auto token = [&](rpc::Role role, const std::string& id, absl::Duration ttl = absl::Hours(1)) {
    return rpc::MakePoolToken(key, role, id, absl::Now() + ttl);
  };
  TlsOptions plain;
  plain.insecure = true;
  auto stub = Stub(c, {plain, ""});

  // An outsider registers a fake teacher under the real model, drains the
  // real one, overwrites a job.
  ExpectRefused(RegisterTeacher(stub.get(), {plain, ""}, "10.6.6.6:50051"),
                grpc::StatusCode::UNAUTHENTICATED, "a teacher token or certificate is required");
  ExpectRefused(Drain(stub.get(), {plain, ""}, t.address()), grpc::StatusCode::UNAUTHENTICATED,
                "an operator token or certificate is required");
  ExpectRefused(RegisterJob(stub.get(), {plain, ""}, "victim"), grpc::StatusCode::UNAUTHENTICATED,
                "a job token is required");
  // A job acts as a teacher, drains, takes another job's id.
  const Client job{plain, token(rpc::Role::kJob, "mallory")};
  ExpectRefused(RegisterTeacher(stub.get(), job, "10.6.6.6:50051"),
                grpc::StatusCode::PERMISSION_DENIED, "a job may not act as teacher");
  ExpectRefused(Drain(stub.get(), job, t.address()), grpc::StatusCode::PERMISSION_DENIED,
                "a job may not act as operator");
  ExpectRefused(RegisterJob(stub.get(), job, "victim"), grpc::StatusCode::PERMISSION_DENIED,
                "the job token does not grant this job");
  // A teacher claims the real teacher's address; forged and expired tokens.
  ExpectRefused(
      RegisterTeacher(stub.get(), {plain, token(rpc::Role::kTeacher, "10.6.6.6")}, t.address()),
      grpc::StatusCode::PERMISSION_DENIED, "the teacher's credentials do not name this address");
  ExpectRefused(
      Drain(stub.get(),
            {plain, rpc::MakePoolToken("another-secret-of-at-least-32-bytes!!",
                                       rpc::Role::kOperator, "ops", absl::Now() + absl::Hours(1))},
            t.address()),
      grpc::StatusCode::UNAUTHENTICATED, "the token is not valid");
  ExpectRefused(Drain(stub.get(), {plain, token(rpc::Role::kOperator, "ops", -absl::Seconds(1))},
                      t.address()),
                grpc::StatusCode::UNAUTHENTICATED, "the token has expired");
  EXPECT_EQ(Refusals(c, "missing"), 3);
  EXPECT_EQ(Refusals(c, "role"), 2);
  EXPECT_EQ(Refusals(c, "identity"), 2);
  EXPECT_EQ(Refusals(c, "invalid"), 1);
  EXPECT_EQ(Refusals(c, "expired"), 1);

  // `mkd drain` without a token is refused; with the operator's it drains
  // the real teacher, which leaves the pool by itself.
  ChildProcess refused("mkd", {"drain", "--coordinator", c.address(), "--insecure", t.address()},
                       Tmp("trust_drain_refused"));
  EXPECT_EQ(refused.Wait(), 1);
  EXPECT_NE(refused.err().find("an operator token or certificate is required"), std::string::npos)
      << refused.err();
  std::ofstream(Tmp("trust_ops.token")) << token(rpc::Role::kOperator, "ops");
  ChildProcess drain("mkd",
                     {"drain", "--coordinator", c.address(), "--insecure", "--token-file",
                      Tmp("trust_ops.token"), t.address()},
                     Tmp("trust_drain"));
  ASSERT_EQ(drain.Wait(), 0) << drain.err();
  EXPECT_EQ(t.process->Wait(), 0) << t.process->err();
  EXPECT_NE(t.process->err().find("drained by the coordinator"), std::string::npos);
}

TEST_F(PoolTrustTest, UnderMutualTlsCertificateRolesDecide) {
  const std::string dir = Tmp("trust_certs");
  std::filesystem::remove_all(dir);
  for (const std::string what : {"ca", "cert coordinator", "role teacher teacher",
                                 "role job mallory", "role operator ops", "cert norole"}) {
    ASSERT_EQ(std::system(("scripts/make_certs.sh " + dir + " " + what).c_str()), 0) << what;
  }
  auto tls = [&](const std::string& who) {
    TlsOptions o;
    o.ca = dir + "/ca.pem";
    o.cert = dir + "/" + who + ".pem";
    o.key = dir + "/" + who + ".key";
    return o;
  };
  auto sets = [&](const std::string& who) {
    return std::vector<std::string>{"tls.insecure=false", "tls.ca=" + dir + "/ca.pem",
                                    "tls.cert=" + dir + "/" + who + ".pem",
                                    "tls.key=" + dir + "/" + who + ".key"};
  };
  Proc c = StartCoordinator("trust_tls_coord", 0, sets("coordinator"));
  ASSERT_GT(c.port, 0);
  std::vector<std::string> teacher_sets = sets("teacher");
  teacher_sets.push_back("auth.insecure=false");  // Its own streams check roles too.
  Proc t = StartTeacher("trust", "trust_tls_t", c.address(), teacher_sets);
  ASSERT_GT(t.port, 0);

  // A certificate from the pool's CA without a role: nothing.
  const Client norole{tls("norole"), ""};
  ExpectRefused(RegisterTeacher(Stub(c, norole).get(), norole, "127.0.0.1:1"),
                grpc::StatusCode::UNAUTHENTICATED, "a teacher token or certificate is required");
  // A job's certificate acts as a teacher, drains, takes another job's id.
  const Client job{tls("mallory"), ""};
  auto as_job = Stub(c, job);
  ExpectRefused(RegisterTeacher(as_job.get(), job, "127.0.0.1:1"),
                grpc::StatusCode::PERMISSION_DENIED, "a job may not act as teacher");
  ExpectRefused(Drain(as_job.get(), job, t.address()), grpc::StatusCode::PERMISSION_DENIED,
                "a job may not act as operator");
  ExpectRefused(RegisterJob(as_job.get(), job, "victim"), grpc::StatusCode::PERMISSION_DENIED,
                "the job token does not grant this job");
  EXPECT_TRUE(RegisterJob(as_job.get(), job, "mallory").ok());  // Its own id: fine.
  // The teacher's certificate names 127.0.0.1 and localhost: no other host.
  const Client teacher{tls("teacher"), ""};
  auto as_teacher = Stub(c, teacher);
  ExpectRefused(RegisterTeacher(as_teacher.get(), teacher, "10.6.6.6:50051"),
                grpc::StatusCode::PERMISSION_DENIED,
                "the teacher's credentials do not name this address");
  ExpectRefused(Drain(as_teacher.get(), teacher, t.address()), grpc::StatusCode::PERMISSION_DENIED,
                "a teacher may not act as operator");
  EXPECT_EQ(Refusals(c, "missing"), 1);
  EXPECT_EQ(Refusals(c, "role"), 3);
  EXPECT_EQ(Refusals(c, "identity"), 2);

  // The operator's certificate drains the real teacher.
  const Client ops{tls("ops"), ""};
  ASSERT_TRUE(Drain(Stub(c, ops).get(), ops, t.address()).ok());
  EXPECT_EQ(t.process->Wait(), 0) << t.process->err();
}

}  // namespace
}  // namespace mkd::pool_test
