// `mkd-health <host:port>`: `mkd health` in a binary without LibTorch, for
// Docker HEALTHCHECKs (every 30 s in every container: `mkd` would load
// LibTorch each time) and images that carry no LibTorch (mkd-coordinator's).
// Exit 0 when the server says SERVING, 1 when it does not or cannot be
// reached, 2 on bad flags.
#include <iostream>
#include <string>
#include <vector>

#include "cli/pool.h"
#include "common/log.h"

int main(int argc, char** argv) {
  mkd::InitLogging("mkd-health");
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--help") {
    std::cout << mkd::cli::HealthUsage();
    return 0;
  }
  auto options = mkd::cli::ParseHealthFlags(args);
  if (!options.ok()) {
    std::cerr << "mkd-health: error: " << options.status().message() << "\n"
              << mkd::cli::HealthUsage();
    return 2;
  }
  auto result = mkd::cli::RunHealth(*options);
  if (!result.ok()) {
    std::cerr << "mkd-health: " << result.status().message() << "\n";
    return 1;
  }
  std::cout << *result << "\n";
  return 0;
}
