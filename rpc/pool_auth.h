// Who may do what in a teacher pool. Three roles: a teacher (joins the pool
// and serves), a job (trains through it), an operator (drains teachers,
// reads the whole pool). A call shows its role in one of two ways:
//   - a pool token in `x-mkd-token` metadata,
//     "mkdt2.<role>.<hex name>.<expiry, Unix s>.<HMAC-SHA256>", under the
//     pool's one secret (auth.pool_secret_file), minted by `mkd token`;
//     plaintext and TLS alike;
//   - under mutual TLS, its certificate: a URI SAN
//     "spiffe://<trust domain>/maskedkd/<role>/<name>".
// Today's job tokens ("mkdjt1.", `mkd job-token`, x-mkd-job-token) keep
// working as job credentials when the secret they were minted under is the
// pool secret. They name no expiry.
//
// What a name grants: a job token or certificate, that job id; a teacher
// token, the addresses it names ("host:port", "host" for any port of it,
// "*" for any); a teacher certificate, addresses whose host is one of its
// DNS or IP SANs; an operator, everything an operator may do.
//
// Refusals carry fixed messages, never the token or the secret, and a
// reason for the refusal counters: missing, invalid, expired, role,
// identity. Torch-free.
#ifndef MKD_RPC_POOL_AUTH_H_
#define MKD_RPC_POOL_AUTH_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/auth_options.h"
#include "common/tls_options.h"

namespace grpc {
class ClientContext;
class ServerContextBase;
}  // namespace grpc

namespace mkd::rpc {

enum class Role { kTeacher, kJob, kOperator };

// "teacher", "job", "operator".
absl::string_view RoleName(Role role);
std::optional<Role> ParseRole(absl::string_view name);

// Every reason a refusal is counted under (mkd_*_auth_refusals_total).
// "instance": the right role and name, but a live member of that name
// belongs to another process.
inline constexpr const char* kAuthRefusalReasons[] = {"missing", "invalid",  "expired",
                                                      "role",    "identity", "instance"};

// The gRPC metadata key pool tokens travel in.
inline constexpr char kTokenMetadata[] = "x-mkd-token";

// A role and the name it is held under (a job id, a teacher's address
// pattern or certificate name, an operator's name).
struct Principal {
  Role role = Role::kJob;
  std::string name;
};

// A pool token for `role` and `name` (any bytes: hex-encoded inside),
// valid until `expires`.
std::string MakePoolToken(absl::string_view secret, Role role, absl::string_view name,
                          absl::Time expires);

// The principal a pool token names, when its MAC holds under `secret` and
// it has not expired at `now`. Refusals: UNAUTHENTICATED "the token is not
// valid" (reason "invalid") or "the token has expired" ("expired").
absl::StatusOr<Principal> VerifyPoolToken(absl::string_view secret, absl::string_view token,
                                          absl::Time now, std::string* reason);

// The role a certificate's URI SAN names ("spiffe://td/maskedkd/job/j7"),
// if it is one of ours.
std::optional<Principal> PrincipalOfUri(absl::string_view uri);

// What a call shows: its token (x-mkd-token, else a job token in
// x-mkd-job-token) and, under TLS, its certificate's role and hosts.
struct CallCredentials {
  std::optional<std::string> token;
  std::optional<Principal> certificate;
  std::vector<std::string> certificate_hosts;  // DNS and IP SANs.
};
CallCredentials CredentialsOf(const grpc::ServerContextBase& ctx);

// Adds `token` to a call: a pool token as x-mkd-token, a job token of the
// old kind as x-mkd-job-token (what older servers read); "" adds nothing.
void AddTokenMetadata(grpc::ClientContext* ctx, const std::string& token);

// Whether `name` (a teacher token's) lets it register `address`.
bool TeacherNameGrants(absl::string_view name, absl::string_view address);

// A server's checks: with a secret, tokens are believed; with
// `certificates` (mutual TLS), certificate roles are; `open`
// (auth.insecure) lets every call through.
class PoolAuthorizer {
 public:
  // `secret`: nullopt for no tokens; "" (a secret file gone since start)
  // believes no token (fail closed).
  PoolAuthorizer(std::optional<std::string> secret, bool certificates, bool open,
                 std::function<absl::Time()> now = absl::Now);

  bool open() const { return open_; }

  // OK when the call may act as `role` for `name`: a job id (kJob), the
  // address a teacher registers (kTeacher), ignored for kOperator.
  // Otherwise UNAUTHENTICATED or PERMISSION_DENIED with a fixed message,
  // and `*reason` set.
  absl::Status Check(const CallCredentials& c, Role role, absl::string_view name,
                     std::string* reason) const;

  // The call's principal, for calls several roles may make. A job token of
  // the old kind names no job here: it is refused ("role").
  absl::StatusOr<Principal> Identify(const CallCredentials& c, std::string* reason) const;

 private:
  const std::optional<std::string> secret_;
  const bool certificates_;
  const bool open_;
  const std::function<absl::Time()> now_;
};

// A server config's security keys, checked when it loads: `tls`, the pool
// secret if named, and secure by default: a server with neither a pool
// secret nor mutual TLS refuses to start unless auth.insecure says so by
// name. Errors start with `what` ("teacher config") and name the key.
absl::Status ValidateServerSecurity(const TlsOptions& tls, const AuthOptions& auth,
                                    absl::string_view what);

// The checks a server with these (validated) options makes. A secret file
// gone since the config was checked believes no token (fail closed).
PoolAuthorizer MakeServerAuthorizer(const AuthOptions& auth, const TlsOptions& tls);

// Prints a warning to stderr that `component` lets every call through, if
// it does.
void WarnIfOpen(const AuthOptions& auth);

}  // namespace mkd::rpc

#endif  // MKD_RPC_POOL_AUTH_H_
