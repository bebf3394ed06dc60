// The teacher's checks over real gRPC on loopback (auth.pool_secret_file):
// a stream without a token is UNAUTHENTICATED, one whose token is another
// job's (or garbage) PERMISSION_DENIED, another role's refused, an expired
// one UNAUTHENTICATED, with messages that name neither the secret nor any
// job; each refusal is counted by reason. A job with its own token (a pool
// token or today's job token) is served, and cannot reach another job's
// answers under the same ids. Without a secret or mutual TLS, the config
// must say auth.insecure by name.
#include <gtest/gtest.h>

#include <fstream>

#include "rpc/job_token.h"
#include "rpc/pool_auth.h"
#include "teacher_server/server_config.h"
#include "teacher_server/server_test_util.h"

namespace mkd::teacher::test_util {
namespace {

constexpr char kSecret[] = "0123456789abcdef0123456789abcdef-test-secret";

std::string SecretFile() {
  const std::string path = ::testing::TempDir() + "/auth_job_secret";
  std::ofstream(path) << kSecret << "\n";
  return path;
}

TeacherServerConfig AuthConfig() {
  TeacherServerConfig c = Config();
  c.auth.insecure = false;
  c.auth.pool_secret_file = SecretFile();
  return c;
}

void ExpectRefused(const grpc::Status& st, grpc::StatusCode code, const std::string& message) {
  EXPECT_EQ(st.error_code(), code) << st.error_message();
  // The whole message: nothing about the secret, the job or its token.
  EXPECT_EQ(st.error_message(), message);
}

TEST(TeacherAuth, AStreamWithoutATokenIsUnauthenticated) {
  Started s = Start(AuthConfig());
  Stream stream(s.stub.get());
  ASSERT_TRUE(stream.Write(Request("job-a", 1, MakeMicroBatch(1, 4, 1))));
  ExpectRefused(stream.AwaitEnd(), grpc::StatusCode::UNAUTHENTICATED, "a job token is required");
  EXPECT_EQ(s.server->metrics().auth_refusals("missing"), 1);
  EXPECT_EQ(s.engine->runs(), 0);
}

TEST(TeacherAuth, AnotherJobsTokenOrGarbageIsPermissionDenied) {
  Started s = Start(AuthConfig());
  for (const std::string token :
       {rpc::MakeJobToken(kSecret, "job-b"), std::string("mkdjt1.00"),
        rpc::MakeJobToken("another-secret-of-32-bytes-or-more!", "job-a")}) {
    Stream stream(s.stub.get(), token);
    ASSERT_TRUE(stream.Write(Request("job-a", 1, MakeMicroBatch(1, 4, 1))));
    ExpectRefused(stream.AwaitEnd(), grpc::StatusCode::PERMISSION_DENIED,
                  "the job token does not grant this job");
  }
  EXPECT_EQ(s.server->metrics().auth_refusals("identity"), 3);
  EXPECT_EQ(s.engine->runs(), 0);
  // Refused streams hold no job slot.
  EXPECT_TRUE(WaitUntil([&] { return s.server->service().stream_limits().open_streams() == 0; }));
}

TEST(TeacherAuth, OtherRolesAndExpiredTokensAreRefused) {
  Started s = Start(AuthConfig());
  const absl::Time later = absl::Now() + absl::Hours(1);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {rpc::MakePoolToken(kSecret, rpc::Role::kTeacher, "*", later),
       "a teacher may not act as job"},
      {rpc::MakePoolToken(kSecret, rpc::Role::kOperator, "ops", later),
       "an operator may not act as job"},
      {rpc::MakePoolToken(kSecret, rpc::Role::kJob, "job-a", absl::Now() - absl::Seconds(1)),
       "the token has expired"},
      {rpc::MakePoolToken(kSecret, rpc::Role::kJob, "job-b", later),
       "the job token does not grant this job"},
  };
  for (const auto& [token, message] : cases) {
    Stream stream(s.stub.get(), token);
    ASSERT_TRUE(stream.Write(Request("job-a", 1, MakeMicroBatch(1, 4, 1))));
    const grpc::Status st = stream.AwaitEnd();
    EXPECT_EQ(st.error_message(), message);
  }
  EXPECT_EQ(s.server->metrics().auth_refusals("role"), 2);
  EXPECT_EQ(s.server->metrics().auth_refusals("expired"), 1);
  EXPECT_EQ(s.server->metrics().auth_refusals("identity"), 1);
  EXPECT_EQ(s.engine->runs(), 0);
  Stream ok(s.stub.get(), rpc::MakePoolToken(kSecret, rpc::Role::kJob, "job-a", later));
  ASSERT_TRUE(ok.Write(Request("job-a", 1, MakeMicroBatch(1, 4, 1))));
  auto got = ok.Read(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got.at(1).code(), 0) << got.at(1).message();
  EXPECT_TRUE(ok.Close().ok());
}

TEST(TeacherAuth, EachJobIsServedWithItsOwnTokenAndSeesOnlyItsOwnAnswers) {
  Started s = Start(AuthConfig());
  const MicroBatch a = MakeMicroBatch(2, 4, 11), b = MakeMicroBatch(2, 4, 12);
  Stream sa(s.stub.get(), rpc::MakeJobToken(kSecret, "job-a"));
  ASSERT_TRUE(sa.Write(Request("job-a", 5, a)));
  auto got_a = sa.Read(1);
  ASSERT_EQ(got_a.size(), 1u);
  ASSERT_EQ(got_a.at(5).code(), 0) << got_a.at(5).message();
  EXPECT_TRUE(torch::allclose(Logits(got_a.at(5)), Expected(a), 1e-5, 1e-5));
  // Job b reuses id 5 with other images: computed for b (its own cache),
  // neither a's answer nor a mismatch with a's request.
  Stream sb(s.stub.get(), rpc::MakeJobToken(kSecret, "job-b"));
  ASSERT_TRUE(sb.Write(Request("job-b", 5, b)));
  auto got_b = sb.Read(1);
  ASSERT_EQ(got_b.size(), 1u);
  ASSERT_EQ(got_b.at(5).code(), 0) << got_b.at(5).message();
  EXPECT_TRUE(torch::allclose(Logits(got_b.at(5)), Expected(b), 1e-5, 1e-5));
  // Job b's token carries no other job on its stream.
  ASSERT_TRUE(sb.Write(Request("job-a", 6, a)));
  auto other = sb.Read(1);
  ASSERT_EQ(other.size(), 1u);
  EXPECT_EQ(other.at(6).code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_TRUE(sa.Close().ok());
  EXPECT_TRUE(sb.Close().ok());
  EXPECT_EQ(s.server->metrics().auth_refusals("missing"), 0);
  EXPECT_EQ(s.server->metrics().auth_refusals("identity"), 0);
}

TEST(TeacherAuth, TheSecretFileIsCheckedWithTheConfig) {
  const std::string short_secret = ::testing::TempDir() + "/auth_short_secret";
  std::ofstream(short_secret) << "too short\n";
  auto c = ParseTeacherServerConfig("model: deit_tiny_patch16_224\nweights: w\n",
                                    {"tls.insecure=true", "auth.job_secret_file=" + short_secret});
  ASSERT_FALSE(c.ok());
  // auth.job_secret_file is the old name of auth.pool_secret_file.
  EXPECT_NE(
      c.status().message().find("auth.pool_secret_file: '" + short_secret + "' holds 9 bytes"),
      std::string::npos)
      << c.status();
  EXPECT_EQ(c.status().message().find("too short"), std::string::npos) << "no secret bytes";
  auto missing = ParseTeacherServerConfig("model: deit_tiny_patch16_224\nweights: w\n",
                                          {"tls.insecure=true", "auth.pool_secret_file=/nope"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("auth.pool_secret_file: cannot read '/nope'"),
            std::string::npos)
      << missing.status();
}

TEST(TeacherAuth, APlaintextServerWithoutASecretMustSayAuthInsecure) {
  auto open =
      ParseTeacherServerConfig("model: deit_tiny_patch16_224\nweights: w\n", {"tls.insecure=true"});
  ASSERT_FALSE(open.ok());
  EXPECT_NE(open.status().message().find("neither auth.pool_secret_file nor mutual TLS"),
            std::string::npos)
      << open.status();
  EXPECT_NE(open.status().message().find("auth.insecure: true"), std::string::npos);
  EXPECT_TRUE(ParseTeacherServerConfig("model: deit_tiny_patch16_224\nweights: w\n",
                                       {"tls.insecure=true", "auth.insecure=true"})
                  .ok());
  EXPECT_TRUE(
      ParseTeacherServerConfig("model: deit_tiny_patch16_224\nweights: w\n",
                               {"tls.insecure=true", "auth.pool_secret_file=" + SecretFile()})
          .ok());
}

TEST(JobToken, IsBoundToTheJobAndTheSecret) {
  const std::string t = rpc::MakeJobToken(kSecret, "job-a");
  EXPECT_EQ(t.rfind("mkdjt1.", 0), 0u);
  EXPECT_EQ(t.size(), 7u + 64u);
  EXPECT_EQ(t, rpc::MakeJobToken(kSecret, "job-a"));  // Deterministic: mintable anywhere.
  EXPECT_TRUE(rpc::JobTokenGrants(kSecret, "job-a", t));
  EXPECT_FALSE(rpc::JobTokenGrants(kSecret, "job-b", t));
  EXPECT_FALSE(rpc::JobTokenGrants(kSecret, "job-a", t.substr(0, t.size() - 1)));
  EXPECT_FALSE(rpc::JobTokenGrants(std::string(kSecret) + "x", "job-a", t));
  // Python's hmac module, independently: hmac.new(secret,
  // b"maskedkd job token v1\njob-a", hashlib.sha256).hexdigest().
  EXPECT_EQ(t, "mkdjt1.134ffe7ae83df258e321fec1bcc41eed53cfd3fbd3bc2c821d1e2edefba9ccdd");
}

}  // namespace
}  // namespace mkd::teacher::test_util
