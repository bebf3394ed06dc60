#include "rpc/pool_auth.h"

#include <grpcpp/grpcpp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "rpc/job_token.h"

namespace mkd::rpc {
namespace {

constexpr absl::string_view kPrefix = "mkdt2";
// Domain separation from the job tokens signed by the same secret.
constexpr absl::string_view kContext = "maskedkd pool token v2\n";
constexpr absl::string_view kLegacyJobPrefix = "mkdjt1.";
constexpr absl::string_view kUriPath = "/maskedkd/";

std::string Mac(absl::string_view secret, absl::string_view role, absl::string_view name,
                absl::string_view expiry) {
  const std::string message = absl::StrCat(kContext, role, "\n", name, "\n", expiry);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(mac), len));
}

absl::Status Refuse(std::string* reason, const char* why, absl::Status status) {
  if (reason != nullptr) *reason = why;
  return status;
}

absl::Status Missing(Role role, std::string* reason) {
  const char* message = role == Role::kJob       ? "a job token is required"
                        : role == Role::kTeacher ? "a teacher token or certificate is required"
                                                 : "an operator token or certificate is required";
  return Refuse(reason, "missing", absl::UnauthenticatedError(message));
}

absl::Status Invalid(std::string* reason) {
  return Refuse(reason, "invalid", absl::UnauthenticatedError("the token is not valid"));
}

absl::string_view HostOf(absl::string_view address) {
  const size_t colon = address.rfind(':');
  absl::string_view host = colon == absl::string_view::npos ? address : address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host;
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kTeacher:
      return "teacher";
    case Role::kJob:
      return "job";
    case Role::kOperator:
      return "operator";
  }
  return "job";
}

std::optional<Role> ParseRole(absl::string_view name) {
  for (Role r : {Role::kTeacher, Role::kJob, Role::kOperator}) {
    if (name == RoleName(r)) return r;
  }
  return std::nullopt;
}

std::string MakePoolToken(absl::string_view secret, Role role, absl::string_view name,
                          absl::Time expires) {
  const std::string hex_name = absl::BytesToHexString(name);
  const std::string expiry = absl::StrCat(absl::ToUnixSeconds(expires));
  return absl::StrCat(kPrefix, ".", RoleName(role), ".", hex_name, ".", expiry, ".",
                      Mac(secret, RoleName(role), name, expiry));
}

absl::StatusOr<Principal> VerifyPoolToken(absl::string_view secret, absl::string_view token,
                                          absl::Time now, std::string* reason) {
  const std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 5 || parts[0] != kPrefix || secret.empty()) return Invalid(reason);
  const std::optional<Role> role = ParseRole(parts[1]);
  int64_t expiry = 0;
  if (!role || parts[2].size() % 2 != 0 || parts[2].size() > 2048 ||
      parts[2].find_first_not_of("0123456789abcdef") != absl::string_view::npos ||
      !absl::SimpleAtoi(parts[3], &expiry)) {
    return Invalid(reason);
  }
  const std::string name = absl::HexStringToBytes(parts[2]);
  const std::string want = Mac(secret, parts[1], name, parts[3]);
  // Contents compared without an early exit: timing tells nothing of the MAC.
  if (parts[4].size() != want.size() ||
      CRYPTO_memcmp(parts[4].data(), want.data(), want.size()) != 0) {
    return Invalid(reason);
  }
  if (absl::FromUnixSeconds(expiry) <= now) {
    return Refuse(reason, "expired", absl::UnauthenticatedError("the token has expired"));
  }
  return Principal{*role, name};
}

std::optional<Principal> PrincipalOfUri(absl::string_view uri) {
  if (!absl::ConsumePrefix(&uri, "spiffe://")) return std::nullopt;
  const size_t path = uri.find(kUriPath);
  if (path == absl::string_view::npos || path == 0) return std::nullopt;
  uri.remove_prefix(path + kUriPath.size());
  const size_t slash = uri.find('/');
  if (slash == absl::string_view::npos) return std::nullopt;
  const std::optional<Role> role = ParseRole(uri.substr(0, slash));
  const absl::string_view name = uri.substr(slash + 1);
  if (!role || name.empty()) return std::nullopt;
  return Principal{*role, std::string(name)};
}

CallCredentials CredentialsOf(const grpc::ServerContextBase& ctx) {
  CallCredentials c;
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find(kTokenMetadata);
  if (it == metadata.end()) it = metadata.find(kJobTokenMetadata);
  if (it != metadata.end()) c.token = std::string(it->second.data(), it->second.size());
  const std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return c;
  for (const char* property : {GRPC_PEER_SPIFFE_ID_PROPERTY_NAME, GRPC_PEER_URI_PROPERTY_NAME}) {
    for (const grpc::string_ref& v : auth->FindPropertyValues(property)) {
      if (!c.certificate) c.certificate = PrincipalOfUri(absl::string_view(v.data(), v.size()));
    }
  }
  for (const char* property :
       {GRPC_PEER_DNS_PROPERTY_NAME, GRPC_PEER_IP_PROPERTY_NAME, GRPC_X509_SAN_PROPERTY_NAME}) {
    for (const grpc::string_ref& v : auth->FindPropertyValues(property)) {
      c.certificate_hosts.emplace_back(v.data(), v.size());
    }
  }
  return c;
}

void AddTokenMetadata(grpc::ClientContext* ctx, const std::string& token) {
  if (token.empty()) return;
  ctx->AddMetadata(absl::StartsWith(token, kLegacyJobPrefix) ? kJobTokenMetadata : kTokenMetadata,
                   token);
}

bool TeacherNameGrants(absl::string_view name, absl::string_view address) {
  return name == "*" || name == address || HostOf(address) == name;
}

PoolAuthorizer::PoolAuthorizer(std::optional<std::string> secret, bool certificates, bool open,
                               std::function<absl::Time()> now)
    : secret_(std::move(secret)), certificates_(certificates), open_(open), now_(std::move(now)) {}

absl::StatusOr<Principal> PoolAuthorizer::Identify(const CallCredentials& c,
                                                   std::string* reason) const {
  if (c.token) {
    if (!secret_) return Invalid(reason);
    if (absl::StartsWith(*c.token, kLegacyJobPrefix)) {
      return Refuse(reason, "role",
                    absl::PermissionDeniedError("this call needs a pool token (mkd token)"));
    }
    return VerifyPoolToken(*secret_, *c.token, now_(), reason);
  }
  if (certificates_ && c.certificate) return *c.certificate;
  return Refuse(reason, "missing",
                absl::UnauthenticatedError("a token or a role certificate is required"));
}

absl::Status PoolAuthorizer::Check(const CallCredentials& c, Role role, absl::string_view name,
                                   std::string* reason) const {
  if (open_) return absl::OkStatus();
  if (!c.token && !(certificates_ && c.certificate)) return Missing(role, reason);
  if (c.token && absl::StartsWith(*c.token, kLegacyJobPrefix)) {
    if (!secret_ || secret_->empty()) return Invalid(reason);  // Fail closed.
    if (role != Role::kJob) {
      return Refuse(
          reason, "role",
          absl::PermissionDeniedError(absl::StrCat("a job token may not act as ", RoleName(role))));
    }
    return JobTokenGrants(*secret_, name, *c.token)
               ? absl::OkStatus()
               : Refuse(reason, "identity",
                        absl::PermissionDeniedError("the job token does not grant this job"));
  }
  absl::StatusOr<Principal> p = Identify(c, reason);
  if (!p.ok()) return p.status();
  if (p->role != role) {
    return Refuse(reason, "role",
                  absl::PermissionDeniedError(
                      absl::StrCat(p->role == Role::kOperator ? "an " : "a ", RoleName(p->role),
                                   " may not act as ", RoleName(role))));
  }
  switch (role) {
    case Role::kJob:
      if (p->name == name) return absl::OkStatus();
      return Refuse(reason, "identity",
                    absl::PermissionDeniedError("the job token does not grant this job"));
    case Role::kTeacher: {
      const bool granted = c.token
                               ? TeacherNameGrants(p->name, name)
                               : std::find(c.certificate_hosts.begin(), c.certificate_hosts.end(),
                                           HostOf(name)) != c.certificate_hosts.end();
      if (granted) return absl::OkStatus();
      return Refuse(
          reason, "identity",
          absl::PermissionDeniedError("the teacher's credentials do not name this address"));
    }
    case Role::kOperator:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status ValidateServerSecurity(const TlsOptions& tls, const AuthOptions& auth,
                                    absl::string_view what) {
  absl::Status st = ValidateTls(tls, TlsRole::kServer, "tls.");
  if (st.ok() && !auth.pool_secret_file.empty()) {
    st = LoadJobSecret(auth.pool_secret_file, "auth.pool_secret_file").status();
  }
  const bool mutual_tls = !tls.insecure && tls.require_client_cert;
  if (st.ok() && auth.pool_secret_file.empty() && !mutual_tls && !auth.insecure) {
    st = absl::InvalidArgumentError(
        "auth: neither auth.pool_secret_file nor mutual TLS is set, so anyone who reaches the "
        "port could join, drain or use the pool; set auth.pool_secret_file (32+ bytes, e.g. "
        "`head -c 48 /dev/urandom | base64`, and mint tokens with `mkd token`), or "
        "auth.insecure: true to run open");
  }
  if (st.ok()) return st;
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", st.message()));
}

PoolAuthorizer MakeServerAuthorizer(const AuthOptions& auth, const TlsOptions& tls) {
  std::optional<std::string> secret;
  if (!auth.pool_secret_file.empty()) {
    absl::StatusOr<std::string> bytes =
        LoadJobSecret(auth.pool_secret_file, "auth.pool_secret_file");
    secret = bytes.ok() ? *bytes : std::string();
  }
  return PoolAuthorizer(std::move(secret), !tls.insecure && tls.require_client_cert, auth.insecure);
}

void WarnIfOpen(const AuthOptions& auth) {
  if (!auth.insecure) return;
  MKD_LOG(WARNING) << "auth.insecure is set: every call is let through; anyone who can reach "
                      "the port can join, drain or use the pool";
}

}  // namespace mkd::rpc
