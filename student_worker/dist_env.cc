#include "student_worker/dist_env.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mkd::student {
namespace {

constexpr int kDefaultMasterPort = 29500;  // torchrun's.

// An integer from variable `name`, if set; kInvalidArgument naming it.
absl::StatusOr<std::optional<int>> EnvInt(const EnvLookup& env, const std::string& name, int lo,
                                          int hi) {
  std::optional<std::string> text = env(name);
  if (!text) return std::optional<int>();
  int v = 0;
  if (!absl::SimpleAtoi(*text, &v) || v < lo || v > hi) {
    return absl::InvalidArgumentError(absl::StrCat("environment variable ", name, ": '", *text,
                                                   "' is not an integer in [", lo, ", ", hi, "]"));
  }
  return std::optional<int>(v);
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

absl::StatusOr<DistConfig> ResolveDistEnv(const DistConfig& config, const EnvLookup& env) {
  DistConfig d = config;
  constexpr int kMaxWorld = 1 << 20;
  if (d.world_size == 0) {
    auto v = EnvInt(env, "WORLD_SIZE", 1, kMaxWorld);
    if (!v.ok()) return v.status();
    d.world_size = v->value_or(1);
  }
  if (d.rank < 0) {
    auto v = EnvInt(env, "RANK", 0, kMaxWorld);
    if (!v.ok()) return v.status();
    if (!*v && d.world_size > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("config key 'dist.rank': a job of ", d.world_size,
                       " ranks needs each process's rank (set dist.rank or $RANK)"));
    }
    d.rank = v->value_or(0);
  }
  if (d.rank >= d.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", d.rank, " (dist.rank or $RANK) is not in [0, world_size ", d.world_size, ")"));
  }
  if (d.local_rank < 0) {
    auto v = EnvInt(env, "LOCAL_RANK", 0, kMaxWorld);
    if (!v.ok()) return v.status();
    d.local_rank = v->value_or(0);
  }
  if (d.master_addr.empty()) d.master_addr = env("MASTER_ADDR").value_or("127.0.0.1");
  if (d.master_port == 0) {
    auto v = EnvInt(env, "MASTER_PORT", 1, 65535);
    if (!v.ok()) return v.status();
    d.master_port = v->value_or(kDefaultMasterPort);
  }
  return d;
}

std::string DeviceForRank(const std::string& device, const DistConfig& resolved) {
  if (device == "cuda" && resolved.world_size > 1)
    return absl::StrCat("cuda:", resolved.local_rank);
  return device;
}

}  // namespace mkd::student
