// Pool tokens and certificate roles, without a server: what a token and a
// URI SAN name, what a teacher's name grants, and how PoolAuthorizer
// decides with a secret, with certificates only, and open.
#include "rpc/pool_auth.h"

#include <gtest/gtest.h>

#include "rpc/job_token.h"

namespace mkd::rpc {
namespace {

constexpr char kSecret[] = "pool-auth-test-secret-of-32-bytes-or-more";
const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

TEST(PoolTokenTest, NamesItsRoleAndNameUntilItExpires) {
  const std::string t =
      MakePoolToken(kSecret, Role::kTeacher, "10.0.0.1:50051", kNow + absl::Hours(1));
  std::string reason;
  absl::StatusOr<Principal> p = VerifyPoolToken(kSecret, t, kNow, &reason);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->role, Role::kTeacher);
  EXPECT_EQ(p->name, "10.0.0.1:50051");
  EXPECT_EQ(VerifyPoolToken(kSecret, t, kNow + absl::Hours(1), &reason).status().message(),
            "the token has expired");
  EXPECT_EQ(reason, "expired");
  EXPECT_EQ(VerifyPoolToken("another-secret-of-at-least-32-bytes!!!", t, kNow, &reason)
                .status()
                .message(),
            "the token is not valid");
  EXPECT_EQ(reason, "invalid");
  // Names with dots, colons and newlines survive (hex inside the token).
  const std::string odd = "a.b:c\nd";
  p = VerifyPoolToken(kSecret, MakePoolToken(kSecret, Role::kJob, odd, kNow + absl::Seconds(1)),
                      kNow, &reason);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->name, odd);
  for (const std::string& bad :
       std::vector<std::string>{"", "mkdt2", "mkdt2.job.00.1.00", "mkdt2.root.00.9999999999.ab",
                                "mkdt2.job.zz.9999999999.ab", t + "0", t.substr(0, t.size() - 1)}) {
    EXPECT_FALSE(VerifyPoolToken(kSecret, bad, kNow, &reason).ok()) << bad;
  }
}

TEST(PoolTokenTest, CertificateUrisNameOurRolesOnly) {
  auto p = PrincipalOfUri("spiffe://pool.example/maskedkd/teacher/gpu-0");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->role, Role::kTeacher);
  EXPECT_EQ(p->name, "gpu-0");
  EXPECT_EQ(PrincipalOfUri("spiffe://td/maskedkd/operator/alice")->role, Role::kOperator);
  EXPECT_FALSE(PrincipalOfUri("spiffe://td/maskedkd/root/alice").has_value());
  EXPECT_FALSE(PrincipalOfUri("spiffe://td/maskedkd/job/").has_value());
  EXPECT_FALSE(PrincipalOfUri("https://td/maskedkd/job/j").has_value());
  EXPECT_FALSE(PrincipalOfUri("spiffe:///maskedkd/job/j").has_value());
}

TEST(PoolTokenTest, ATeachersNameGrantsItsAddressItsHostOrAll) {
  EXPECT_TRUE(TeacherNameGrants("10.0.0.1:5", "10.0.0.1:5"));
  EXPECT_FALSE(TeacherNameGrants("10.0.0.1:5", "10.0.0.1:6"));
  EXPECT_TRUE(TeacherNameGrants("10.0.0.1", "10.0.0.1:6"));
  EXPECT_FALSE(TeacherNameGrants("10.0.0.1", "10.0.0.11:6"));
  EXPECT_TRUE(TeacherNameGrants("::1", "[::1]:6"));
  EXPECT_TRUE(TeacherNameGrants("*", "anything:1"));
}

TEST(PoolAuthorizerTest, CertificatesAloneDecideWithoutASecret) {
  PoolAuthorizer auth(std::nullopt, /*certificates=*/true, /*open=*/false, [] { return kNow; });
  CallCredentials teacher;
  teacher.certificate = Principal{Role::kTeacher, "gpu-0"};
  teacher.certificate_hosts = {"teacher-0.pool", "10.0.0.1"};
  std::string reason;
  EXPECT_TRUE(auth.Check(teacher, Role::kTeacher, "10.0.0.1:50051", &reason).ok());
  EXPECT_TRUE(auth.Check(teacher, Role::kTeacher, "teacher-0.pool:50051", &reason).ok());
  EXPECT_EQ(auth.Check(teacher, Role::kTeacher, "10.0.0.2:50051", &reason).message(),
            "the teacher's credentials do not name this address");
  EXPECT_EQ(reason, "identity");
  EXPECT_EQ(auth.Check(teacher, Role::kJob, "j", &reason).message(),
            "a teacher may not act as job");
  CallCredentials job;
  job.certificate = Principal{Role::kJob, "j7"};
  EXPECT_TRUE(auth.Check(job, Role::kJob, "j7", &reason).ok());
  EXPECT_FALSE(auth.Check(job, Role::kJob, "j8", &reason).ok());
  // A token is not believed without a secret.
  CallCredentials token;
  token.token = MakePoolToken(kSecret, Role::kOperator, "ops", kNow + absl::Hours(1));
  EXPECT_EQ(auth.Check(token, Role::kOperator, "", &reason).message(), "the token is not valid");
  EXPECT_EQ(auth.Check(CallCredentials(), Role::kJob, "j", &reason).message(),
            "a job token is required");
}

TEST(PoolAuthorizerTest, WithoutCertificateTrustACertificateRoleCountsForNothing) {
  PoolAuthorizer auth(std::string(kSecret), /*certificates=*/false, /*open=*/false,
                      [] { return kNow; });
  CallCredentials c;
  c.certificate = Principal{Role::kOperator, "ops"};
  std::string reason;
  EXPECT_EQ(auth.Check(c, Role::kOperator, "", &reason).code(), absl::StatusCode::kUnauthenticated);
  c.token = MakeJobToken(kSecret, "j");
  EXPECT_TRUE(auth.Check(c, Role::kJob, "j", &reason).ok());
  EXPECT_TRUE(PoolAuthorizer(std::nullopt, false, /*open=*/true)
                  .Check({}, Role::kOperator, "", &reason)
                  .ok());
  // A secret file gone since start ("" secret) believes no token.
  PoolAuthorizer gone(std::string(), false, false, [] { return kNow; });
  c.token = MakePoolToken("", Role::kJob, "j", kNow + absl::Hours(1));
  EXPECT_FALSE(gone.Check(c, Role::kJob, "j", &reason).ok());
}

}  // namespace
}  // namespace mkd::rpc
