#include "cli/pool.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/config_yaml.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "maskedkd/v1/coordinator.grpc.pb.h"
#include "proto/wire.h"
#include "rpc/job_token.h"
#include "rpc/pool_auth.h"
#include "rpc/status.h"
#include "rpc/transport_security.h"

namespace mkd::cli {
namespace {

namespace v1 = ::maskedkd::v1;

// Transport security, as the servers' tls.* keys: mutual TLS, or
// --insecure by name.
void AddTlsSpecs(std::vector<FlagSpec>* specs) {
  specs->insert(specs->end(), {
                                  {"tls-ca", true, "PEM CA the server's certificate must chain to"},
                                  {"tls-cert", true, "PEM client certificate (mutual TLS)"},
                                  {"tls-key", true, "PEM private key of --tls-cert"},
                                  {"tls-server-name", true,
                                   "the name the server's certificate must carry, if not "
                                   "the address's host"},
                                  {"insecure", false, "plaintext, without TLS"},
                              });
}

const std::vector<FlagSpec>& Specs() {
  static const auto* specs = [] {
    auto* s = new std::vector<FlagSpec>{
        {"coordinator", true, "host:port of mkd-coordinator"},
        {"timeout-s", true, "seconds to wait for the coordinator (default 5)"},
        {"json", false, "status: print the coordinator's answers as JSON"},
        {"token-file", true, "an operator's pool token (mkd token --role operator)"},
    };
    AddTlsSpecs(s);
    return s;
  }();
  return *specs;
}

const std::vector<FlagSpec>& HealthSpecs() {
  static const auto* specs = [] {
    auto* s = new std::vector<FlagSpec>{
        {"timeout-s", true, "seconds to wait for an answer (default 5)"},
    };
    AddTlsSpecs(s);
    return s;
  }();
  return *specs;
}

absl::StatusOr<TlsOptions> Tls(const ParsedFlags& f) {
  TlsOptions t;
  t.insecure = f.Has("insecure");
  t.ca = f.Get("tls-ca").value_or("");
  t.cert = f.Get("tls-cert").value_or("");
  t.key = f.Get("tls-key").value_or("");
  t.server_name = f.Get("tls-server-name").value_or("");
  MKD_RETURN_IF_ERROR(ValidateTls(t, TlsRole::kClient, "--tls-"));
  return t;
}

absl::StatusOr<absl::Duration> Timeout(const ParsedFlags& f) {
  MKD_ASSIGN_OR_RETURN(int64_t t, f.GetInt("timeout-s", 5));
  if (t < 1) return absl::InvalidArgumentError("--timeout-s: must be >= 1");
  return absl::Seconds(t);
}

absl::StatusOr<PoolOptions> Parse(const std::vector<std::string>& args, size_t positionals) {
  MKD_ASSIGN_OR_RETURN(ParsedFlags f, ParseFlags(args, Specs()));
  PoolOptions o;
  MKD_ASSIGN_OR_RETURN(o.coordinator, f.Required("coordinator"));
  if (!IsHostPort(o.coordinator)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--coordinator: expected host:port, got '", o.coordinator, "'"));
  }
  MKD_ASSIGN_OR_RETURN(o.timeout, Timeout(f));
  MKD_ASSIGN_OR_RETURN(o.tls, Tls(f));
  o.json = f.Has("json");
  if (auto file = f.Get("token-file")) {
    MKD_ASSIGN_OR_RETURN(o.token, rpc::LoadJobToken(*file, "--token-file"));
  }
  if (f.positional().size() != positionals) {
    return absl::InvalidArgumentError(positionals == 0 ? "unexpected argument"
                                                       : "expected one teacher address");
  }
  if (positionals == 1) o.teacher = f.positional()[0];
  return o;
}

absl::StatusOr<std::unique_ptr<v1::CoordinatorService::Stub>> Stub(const PoolOptions& o) {
  MKD_ASSIGN_OR_RETURN(auto channel, rpc::MakeChannel(o.coordinator, o.tls, nullptr));
  return v1::CoordinatorService::NewStub(channel);
}

// Every call: wait for the coordinator up to the timeout, show the token.
void PrepareCall(grpc::ClientContext* ctx, const PoolOptions& o) {
  rpc::AddTokenMetadata(ctx, o.token);
  ctx->set_wait_for_ready(true);
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + o.timeout));
}

absl::Status FromGrpc(const grpc::Status& st, const PoolOptions& o) {
  return rpc::FromGrpcStatus(st, absl::StrCat("coordinator ", o.coordinator));
}

}  // namespace

absl::StatusOr<PoolOptions> ParseStatusFlags(const std::vector<std::string>& args) {
  return Parse(args, 0);
}
absl::StatusOr<PoolOptions> ParseDrainFlags(const std::vector<std::string>& args) {
  return Parse(args, 1);
}

absl::StatusOr<PoolOptions> ParseHealthFlags(const std::vector<std::string>& args) {
  MKD_ASSIGN_OR_RETURN(ParsedFlags f, ParseFlags(args, HealthSpecs()));
  PoolOptions o;
  MKD_ASSIGN_OR_RETURN(o.timeout, Timeout(f));
  MKD_ASSIGN_OR_RETURN(o.tls, Tls(f));
  if (f.positional().size() != 1 || !IsHostPort(f.positional()[0])) {
    return absl::InvalidArgumentError("expected one server address, host:port");
  }
  o.teacher = f.positional()[0];
  return o;
}

std::string HealthUsage() {
  return "usage: mkd health <host:port> (--tls-ca ca.pem [...] | --insecure) [--timeout-s 5]\n" +
         FlagsUsage(HealthSpecs());
}

std::string StatusUsage() {
  return "usage: mkd status --coordinator host:port (--tls-ca ca.pem [...] | --insecure)\n" +
         FlagsUsage(Specs());
}
std::string DrainUsage() {
  return "usage: mkd drain --coordinator host:port (--tls-ca ca.pem [...] | --insecure) "
         "<teacher host:port>\n" +
         FlagsUsage(Specs());
}

absl::StatusOr<std::string> RunStatus(const PoolOptions& o) {
  MKD_ASSIGN_OR_RETURN(auto stub, Stub(o));
  v1::ListTeachersResponse teachers;
  v1::ListJobsResponse jobs;
  {
    grpc::ClientContext ctx;
    PrepareCall(&ctx, o);
    MKD_RETURN_IF_ERROR(
        FromGrpc(stub->ListTeachers(&ctx, v1::ListTeachersRequest(), &teachers), o));
  }
  {
    grpc::ClientContext ctx;
    PrepareCall(&ctx, o);
    MKD_RETURN_IF_ERROR(FromGrpc(stub->ListJobs(&ctx, v1::ListJobsRequest(), &jobs), o));
  }
  if (o.json) {
    std::string t, j;
    google::protobuf::util::JsonPrintOptions p;
    p.preserve_proto_field_names = true;
    if (!google::protobuf::util::MessageToJsonString(teachers, &t, p).ok() ||
        !google::protobuf::util::MessageToJsonString(jobs, &j, p).ok()) {
      return absl::InternalError("cannot print the pool as JSON");
    }
    return absl::StrCat("{\"teachers\": ", t, ", \"jobs\": ", j, "}");
  }
  std::string out = absl::StrFormat("%-22s %-34s %-8s %-9s %10s %6s %7s  %s\n", "TEACHER", "MODEL",
                                    "DEVICE", "STATE", "TOKENS/S", "QUEUE", "BEAT", "JOBS");
  for (const v1::TeacherStatus& t : teachers.teachers()) {
    absl::StrAppendFormat(&out, "%-22s %-34s %-8s %-9s %10.0f %6d %6.1fs  %s\n", t.info().address(),
                          t.info().model_id(), t.info().device(),
                          proto::TeacherStateName(t.state()), t.load().tokens_per_s(),
                          t.load().queued(), t.last_heartbeat_age_s(),
                          absl::StrJoin(t.jobs(), ","));
  }
  if (teachers.teachers().empty()) out += "(no teachers)\n";
  absl::StrAppendFormat(&out, "\n%-20s %-34s %6s %5s %7s %8s %3s %9s %9s %7s  %s\n", "JOB", "MODEL",
                        "WEIGHT", "RANKS", "STEP", "IMG/S", "M", "STEP_S", "PREDICTED", "BUBBLE",
                        "TEACHERS");
  for (const v1::JobStatus& j : jobs.jobs()) {
    std::string teachers_col = absl::StrJoin(j.teachers(), ",");
    if (teachers_col.empty()) teachers_col = "(waiting: " + j.waiting_reason() + ")";
    const std::string ranks = absl::StrCat(j.ranks(), "/", std::max(1, j.info().world_size()));
    absl::StrAppendFormat(&out, "%-20s %-34s %6.2f %5s %7d %8.1f %3d %8.3fs %8.3fs %6.0f%%  %s\n",
                          j.info().job_id(), j.info().model_id(), j.info().weight(), ranks,
                          j.timings().step(), j.timings().images_per_s(), j.micro_batches(),
                          j.timings().measured_step_s(), j.predicted_step_s(),
                          100 * j.predicted_bubble(), teachers_col);
  }
  if (jobs.jobs().empty()) out += "(no jobs)\n";
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

absl::StatusOr<std::string> RunDrain(const PoolOptions& o) {
  MKD_ASSIGN_OR_RETURN(auto stub, Stub(o));
  grpc::ClientContext ctx;
  PrepareCall(&ctx, o);
  v1::DrainRequest req;
  req.set_address(o.teacher);
  v1::DrainResponse resp;
  MKD_RETURN_IF_ERROR(FromGrpc(stub->Drain(&ctx, req, &resp), o));
  return absl::StrCat("teacher ", o.teacher, ": ", proto::TeacherStateName(resp.state()),
                      " (it finishes what it accepted, then leaves the pool)");
}

absl::StatusOr<std::string> RunHealth(const PoolOptions& o) {
  MKD_ASSIGN_OR_RETURN(auto channel, rpc::MakeChannel(o.teacher, o.tls, nullptr));
  auto stub = ::grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  // No wait_for_ready: a server that is not listening is unhealthy now.
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + o.timeout));
  ::grpc::health::v1::HealthCheckResponse resp;
  const grpc::Status st = stub->Check(&ctx, ::grpc::health::v1::HealthCheckRequest(), &resp);
  if (!st.ok()) {
    return absl::UnavailableError(absl::StrCat(o.teacher, ": ", st.error_message()));
  }
  const std::string name =
      ::grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
  if (resp.status() != ::grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::FailedPreconditionError(absl::StrCat(o.teacher, ": ", name));
  }
  return absl::StrCat(o.teacher, ": ", name);
}

namespace {

const std::vector<FlagSpec>& TokenSpecs() {
  static const auto* specs = new std::vector<FlagSpec>{
      {"secret-file", true, "the pool's secret (auth.pool_secret_file)"},
      {"role", true, "teacher, job or operator"},
      {"id", true,
       "job: the job id; teacher: the address it registers (host:port, host for any port, "
       "* for any); operator: a name for logs"},
      {"ttl", true, "how long it is valid: N followed by s, m, h or d (default 30d)"},
  };
  return *specs;
}

}  // namespace

absl::StatusOr<absl::Duration> ParseTtl(const std::string& text, absl::string_view flag) {
  int64_t n = 0;
  const char unit = text.empty() ? ' ' : text.back();
  const absl::Duration per = unit == 's'   ? absl::Seconds(1)
                             : unit == 'm' ? absl::Minutes(1)
                             : unit == 'h' ? absl::Hours(1)
                             : unit == 'd' ? absl::Hours(24)
                                           : absl::ZeroDuration();
  if (per == absl::ZeroDuration() || !absl::SimpleAtoi(text.substr(0, text.size() - 1), &n) ||
      n < 1 || n > 3650 * 24 * 3600) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected N followed by s, m, h or d (e.g. 30d), got '", text, "'"));
  }
  return per * n;
}

absl::StatusOr<TokenOptions> ParseTokenFlags(const std::vector<std::string>& args) {
  MKD_ASSIGN_OR_RETURN(ParsedFlags f, ParseFlags(args, TokenSpecs()));
  TokenOptions o;
  MKD_ASSIGN_OR_RETURN(o.secret_file, f.Required("secret-file"));
  MKD_ASSIGN_OR_RETURN(std::string role, f.Required("role"));
  std::optional<rpc::Role> r = rpc::ParseRole(role);
  if (!r) {
    return absl::InvalidArgumentError(
        absl::StrCat("--role: expected teacher, job or operator, got '", role, "'"));
  }
  o.role = *r;
  MKD_ASSIGN_OR_RETURN(o.id, f.Required("id"));
  if (o.id.empty() || o.id.size() > 253) {
    return absl::InvalidArgumentError("--id: must be 1 to 253 bytes");
  }
  MKD_ASSIGN_OR_RETURN(o.ttl, ParseTtl(f.Get("ttl").value_or("30d"), "--ttl"));
  if (!f.positional().empty()) return absl::InvalidArgumentError("unexpected argument");
  return o;
}

std::string TokenUsage() {
  return "usage: mkd token --secret-file FILE --role teacher|job|operator --id ID [--ttl 30d] "
         "> role.token\n" +
         FlagsUsage(TokenSpecs());
}

absl::StatusOr<std::string> RunToken(const TokenOptions& o) {
  MKD_ASSIGN_OR_RETURN(std::string secret, rpc::LoadJobSecret(o.secret_file, "--secret-file"));
  return rpc::MakePoolToken(secret, o.role, o.id, absl::Now() + o.ttl);
}

const std::vector<FlagSpec>& JobTokenSpecs() {
  static const auto* specs = new std::vector<FlagSpec>{
      {"secret-file", true, "the teachers' auth.job_secret_file"},
      {"job", true, "the job id (distill.job_id, or run.out_dir's name)"},
  };
  return *specs;
}

absl::StatusOr<JobTokenOptions> ParseJobTokenFlags(const std::vector<std::string>& args) {
  MKD_ASSIGN_OR_RETURN(ParsedFlags f, ParseFlags(args, JobTokenSpecs()));
  JobTokenOptions o;
  MKD_ASSIGN_OR_RETURN(o.secret_file, f.Required("secret-file"));
  MKD_ASSIGN_OR_RETURN(o.job, f.Required("job"));
  if (o.job.empty()) return absl::InvalidArgumentError("--job: must not be empty");
  if (!f.positional().empty()) return absl::InvalidArgumentError("unexpected argument");
  return o;
}

std::string JobTokenUsage() {
  return "usage: mkd job-token --secret-file FILE --job ID > job.token\n" +
         FlagsUsage(JobTokenSpecs());
}

absl::StatusOr<std::string> RunJobToken(const JobTokenOptions& o) {
  MKD_ASSIGN_OR_RETURN(std::string secret, rpc::LoadJobSecret(o.secret_file, "--secret-file"));
  return rpc::MakeJobToken(secret, o.job);
}

}  // namespace mkd::cli
