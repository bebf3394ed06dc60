// The `tls` block of every config and CLI that speaks gRPC: which PEM files
// give this process its identity and its trust, or plaintext asked for by
// name (`tls.insecure: true`). Checking a block, its config keys, and the
// start-up warning; the gRPC credentials made from it are
// rpc/transport_security.h's. Torch-free and gRPC-free: a trainer's
// config holds one without linking gRPC.
#ifndef MKD_COMMON_TLS_OPTIONS_H_
#define MKD_COMMON_TLS_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/config_yaml.h"

namespace mkd {

struct TlsOptions {
  bool insecure = false;  // Plaintext; only when set explicitly.
  std::string cert;       // PEM certificate chain: this process's identity.
  std::string key;        // PEM private key of `cert`.
  std::string ca;         // PEM CA certificates that peers' certificates must chain to.
  // Client: the name servers' certificates must carry, instead of the host
  // of the address dialled (teachers advertise IPs; certificates name the pool).
  std::string server_name;
  int64_t refresh_s = 60;  // How often the files are re-read.
  // Server: refuse clients without a certificate signed by `ca`.
  bool require_client_cert = true;
};

enum class TlsRole { kServer, kClient };

// Whether `o` is complete for `role`: insecure, or the files it needs,
// readable PEM. Errors name the offending key as `prefix` + name ("tls.ca",
// "--tls-ca") and say how to fix it.
absl::Status ValidateTls(const TlsOptions& o, TlsRole role, absl::string_view prefix);

// Prints a warning to stderr that `component` runs without TLS, if it does.
void WarnIfInsecure(const TlsOptions& o);

// Adds the `tls.*` keys of a config whose TlsOptions `tls` returns; `what`
// names the config in errors. `server` adds require_client_cert.
template <typename Config>
void AddTlsConfigKeys(std::function<TlsOptions&(Config&)> tls, const char* what, bool server,
                      std::map<std::string, ConfigSetter<Config>>* setters) {
  auto text = [&](std::string TlsOptions::*member, const char* type_name) {
    return ConfigField<Config, std::string>(
        [tls, member](Config& c) -> std::string& { return tls(c).*member; }, what, type_name);
  };
  (*setters)["tls.insecure"] = ConfigField<Config, bool>(
      [tls](Config& c) -> bool& { return tls(c).insecure; }, what, "true or false");
  (*setters)["tls.cert"] = text(&TlsOptions::cert, "a path");
  (*setters)["tls.key"] = text(&TlsOptions::key, "a path");
  (*setters)["tls.ca"] = text(&TlsOptions::ca, "a path");
  (*setters)["tls.server_name"] = text(&TlsOptions::server_name, "a host name");
  (*setters)["tls.refresh_s"] = ConfigField<Config, int64_t>(
      [tls](Config& c) -> int64_t& { return tls(c).refresh_s; }, what, "an integer");
  if (server) {
    (*setters)["tls.require_client_cert"] = ConfigField<Config, bool>(
        [tls](Config& c) -> bool& { return tls(c).require_client_cert; }, what, "true or false");
  }
}

}  // namespace mkd

#endif  // MKD_COMMON_TLS_OPTIONS_H_
