// mkd-coordinator's configuration: one plain struct with defaults in the
// declaration, loaded from YAML (+ --set overrides) and validated; errors
// name the offending key. Torch-free.
#ifndef MKD_COORDINATOR_CONFIG_H_
#define MKD_COORDINATOR_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/auth_options.h"
#include "common/tls_options.h"

namespace mkd::coordinator {

struct CoordinatorConfig {
  std::string listen = "0.0.0.0:50050";         // gRPC; port 0 picks a free one.
  std::string metrics_listen = "0.0.0.0:9465";  // /metrics; "" turns it off.
  double lease_s = 5;                           // A member silent this long is gone.
  double heartbeat_s = 1;                       // The interval members are told to keep.
  // After start, no assignment is handed out for this long (-1: lease_s),
  // so a restarted coordinator hears from every member before it decides
  // anything: a job must not lose its teachers because they have not
  // heartbeated yet.
  double settle_s = -1;
  double forget_gone_s = 300;  // Gone teachers stay listed this long.
  int explore_steps = 3;       // Steps measured per candidate m before planning.
  TlsOptions tls;              // tls.*: mutual TLS, or tls.insecure explicitly.
  // auth.*: the pool secret that tokens of every role are signed with, or
  // auth.insecure. Who may call what: coordinator/README.md, docs/security.md.
  AuthOptions auth;
};

absl::StatusOr<CoordinatorConfig> ParseCoordinatorConfig(const std::string& yaml_text,
                                                         const std::vector<std::string>& overrides);
absl::StatusOr<CoordinatorConfig> LoadCoordinatorConfig(const std::string& path,
                                                        const std::vector<std::string>& overrides);

}  // namespace mkd::coordinator

#endif  // MKD_COORDINATOR_CONFIG_H_
