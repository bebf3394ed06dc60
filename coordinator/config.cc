#include "coordinator/config.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "common/config_yaml.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "rpc/pool_auth.h"

namespace mkd::coordinator {
namespace {

constexpr char kWhat[] = "coordinator config";

#define MKD_FIELD(type, path, type_name)                                                     \
  ConfigField<CoordinatorConfig, type>([](CoordinatorConfig& c) -> type& { return c.path; }, \
                                       kWhat, type_name)

const std::map<std::string, ConfigSetter<CoordinatorConfig>>& Setters() {
  static const auto* setters = [] {
    auto* s = new std::map<std::string, ConfigSetter<CoordinatorConfig>>{
        {"listen", MKD_FIELD(std::string, listen, "host:port")},
        {"metrics_listen", MKD_FIELD(std::string, metrics_listen, "host:port")},
        {"lease_s", MKD_FIELD(double, lease_s, "a number")},
        {"heartbeat_s", MKD_FIELD(double, heartbeat_s, "a number")},
        {"settle_s", MKD_FIELD(double, settle_s, "a number")},
        {"forget_gone_s", MKD_FIELD(double, forget_gone_s, "a number")},
        {"explore_steps", MKD_FIELD(int, explore_steps, "an integer")},
    };
    AddTlsConfigKeys<CoordinatorConfig>([](CoordinatorConfig& c) -> TlsOptions& { return c.tls; },
                                        kWhat, /*server=*/true, s);
    AddAuthConfigKeys<CoordinatorConfig>(
        [](CoordinatorConfig& c) -> AuthOptions& { return c.auth; }, kWhat, s);
    return s;
  }();
  return *setters;
}

#undef MKD_FIELD

absl::Status Validate(CoordinatorConfig& c) {
  auto bad = [](const char* key, absl::string_view why) { return ConfigKeyError(kWhat, key, why); };
  if (!IsHostPort(c.listen))
    return bad("listen", absl::StrCat("expected host:port, got '", c.listen, "'"));
  if (!c.metrics_listen.empty() && !IsHostPort(c.metrics_listen)) {
    return bad("metrics_listen",
               absl::StrCat("expected host:port or \"\", got '", c.metrics_listen, "'"));
  }
  if (!(c.heartbeat_s > 0)) return bad("heartbeat_s", "must be positive");
  if (!(c.lease_s >= 2 * c.heartbeat_s)) {
    return bad("lease_s", "must be at least twice heartbeat_s (one late heartbeat is not a death)");
  }
  if (c.settle_s < 0) c.settle_s = c.lease_s;
  if (c.forget_gone_s < 0) return bad("forget_gone_s", "must be >= 0");
  if (c.explore_steps < 1) return bad("explore_steps", "must be >= 1");
  return rpc::ValidateServerSecurity(c.tls, c.auth, kWhat);
}

}  // namespace

absl::StatusOr<CoordinatorConfig> ParseCoordinatorConfig(
    const std::string& yaml_text, const std::vector<std::string>& overrides) {
  MKD_ASSIGN_OR_RETURN(auto flat, FlattenConfig(yaml_text, overrides));
  CoordinatorConfig config;
  MKD_RETURN_IF_ERROR(ApplyConfigKeys(flat, Setters(), kWhat, "", config));
  MKD_RETURN_IF_ERROR(Validate(config));
  return config;
}

absl::StatusOr<CoordinatorConfig> LoadCoordinatorConfig(const std::string& path,
                                                        const std::vector<std::string>& overrides) {
  MKD_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto config = ParseCoordinatorConfig(text, overrides);
  if (!config.ok()) return Annotate(config.status(), path);
  return config;
}

}  // namespace mkd::coordinator
