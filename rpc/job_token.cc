#include "rpc/job_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace mkd::rpc {
namespace {

constexpr absl::string_view kPrefix = "mkdjt1.";
// Domain separation: the same secret could sign other things one day.
constexpr absl::string_view kContext = "maskedkd job token v1\n";

}  // namespace

absl::StatusOr<std::string> LoadJobSecret(const std::string& path, absl::string_view key) {
  absl::StatusOr<std::string> bytes = ReadFile(path, 1 << 16);
  if (!bytes.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": cannot read '", path, "': ", bytes.status().message()));
  }
  std::string secret = *std::move(bytes);
  if (!secret.empty() && secret.back() == '\n') secret.pop_back();
  if (secret.size() < 32 || secret.size() > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        key, ": '", path, "' holds ", secret.size(),
        " bytes; a pool secret needs 32 to 4096 (e.g. `head -c 48 /dev/urandom | base64`)"));
  }
  return secret;
}

std::string MakeJobToken(absl::string_view secret, absl::string_view job_id) {
  const std::string message = absl::StrCat(kContext, job_id);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len);
  return absl::StrCat(kPrefix,
                      absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(mac), len)));
}

bool JobTokenGrants(absl::string_view secret, absl::string_view job_id, absl::string_view token) {
  const std::string want = MakeJobToken(secret, job_id);
  // Lengths are public (every token has the same one); contents are
  // compared without an early exit, so timing tells nothing of the secret.
  return token.size() == want.size() && CRYPTO_memcmp(token.data(), want.data(), want.size()) == 0;
}

absl::Status CheckJobToken(absl::string_view secret, absl::string_view job,
                           const std::optional<std::string>& token) {
  if (!token) return absl::UnauthenticatedError("a job token is required");
  if (secret.empty() || !JobTokenGrants(secret, job, *token)) {
    return absl::PermissionDeniedError("the job token does not grant this job");
  }
  return absl::OkStatus();
}

std::optional<std::string> JobTokenOf(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
  auto it = metadata.find(kJobTokenMetadata);
  if (it == metadata.end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

absl::StatusOr<std::string> LoadJobToken(const std::string& path, absl::string_view key) {
  absl::StatusOr<std::string> bytes = ReadFile(path, 1 << 12);
  if (!bytes.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": cannot read '", path, "': ", bytes.status().message()));
  }
  std::string token(absl::StripAsciiWhitespace(*bytes));
  if (!absl::StartsWith(token, kPrefix) && !absl::StartsWith(token, "mkdt2.")) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": '", path, "' holds no token (mint one with `mkd token --role job`)"));
  }
  return token;
}

}  // namespace mkd::rpc
