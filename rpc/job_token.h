// Per-job tokens: what a student shows a teacher to use a job id. A token
// is an HMAC-SHA256 of the job id under a secret that the pool's operator
// keeps (`auth.job_secret_file` on every teacher); `mkd job-token` mints
// one for a job. It is bound to the id, so a token for job A opens no
// stream of job B, and with the teacher's one-job-per-stream rule and its
// per-job result cache, a job cannot read another's answers, reuse its
// micro-batch ids or cancel its work. Tokens do not expire: rotating the
// secret revokes them all. Torch-free.
#ifndef MKD_RPC_JOB_TOKEN_H_
#define MKD_RPC_JOB_TOKEN_H_

#include <grpcpp/support/string_ref.h>

#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mkd::rpc {

// The gRPC metadata key a token travels in (on every Distill stream).
inline constexpr char kJobTokenMetadata[] = "x-mkd-job-token";

// The secret file's bytes (at least 32, at most 4096; a trailing newline
// is dropped); errors name `key` and say what is wrong, never the bytes.
absl::StatusOr<std::string> LoadJobSecret(const std::string& path, absl::string_view key);

// "mkdjt1." followed by 64 hex digits.
std::string MakeJobToken(absl::string_view secret, absl::string_view job_id);

// Whether `token` is the token for `job_id` (compared in constant time).
bool JobTokenGrants(absl::string_view secret, absl::string_view job_id, absl::string_view token);

// The refusal, if any, of a call for `job` carrying `token` (nullopt: the
// call had none): UNAUTHENTICATED "a job token is required", or
// PERMISSION_DENIED "the job token does not grant this job". Fixed
// messages: nothing about the job, the token or the secret. An empty
// `secret` grants nothing (fail closed).
absl::Status CheckJobToken(absl::string_view secret, absl::string_view job,
                           const std::optional<std::string>& token);

// The token in a call's metadata (kJobTokenMetadata), if it carries one.
std::optional<std::string> JobTokenOf(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata);

// A token file's contents, whitespace trimmed; errors name `key`.
absl::StatusOr<std::string> LoadJobToken(const std::string& path, absl::string_view key);

}  // namespace mkd::rpc

#endif  // MKD_RPC_JOB_TOKEN_H_
