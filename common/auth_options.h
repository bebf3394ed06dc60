// The `auth` block of mkd-teacher's and mkd-coordinator's configs: the
// pool's one secret that signs every role's token, or running open asked
// for by name. Torch-free and gRPC-free; rpc/pool_auth.h checks calls.
#ifndef MKD_COMMON_AUTH_OPTIONS_H_
#define MKD_COMMON_AUTH_OPTIONS_H_

#include <functional>
#include <map>
#include <string>

#include "common/config_yaml.h"

namespace mkd {

struct AuthOptions {
  // auth.pool_secret_file: the secret pool tokens are signed with (32 to
  // 4096 bytes). auth.job_secret_file is its old name, read the same.
  std::string pool_secret_file;
  // auth.insecure: every call is let through; only when set explicitly.
  bool insecure = false;
};

template <typename Config>
void AddAuthConfigKeys(std::function<AuthOptions&(Config&)> auth, const char* what,
                       std::map<std::string, ConfigSetter<Config>>* setters) {
  auto secret = ConfigField<Config, std::string>(
      [auth](Config& c) -> std::string& { return auth(c).pool_secret_file; }, what, "a path");
  (*setters)["auth.pool_secret_file"] = secret;
  (*setters)["auth.job_secret_file"] = secret;
  (*setters)["auth.insecure"] = ConfigField<Config, bool>(
      [auth](Config& c) -> bool& { return auth(c).insecure; }, what, "true or false");
}

}  // namespace mkd

#endif  // MKD_COMMON_AUTH_OPTIONS_H_
