#include "common/host_identity.h"

#include <unistd.h>

#include <fstream>

#include "absl/strings/ascii.h"

namespace mkd {

const HostIdentity& ThisHost() {
  static const HostIdentity* identity = [] {
    auto* id = new HostIdentity;
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) == 0) id->host = name;
    // The boot id: the same in every container of one kernel, unlike the
    // host name (a pod's own) or the machine id (an image's).
    std::ifstream boot("/proc/sys/kernel/random/boot_id");
    std::string line;
    if (boot && std::getline(boot, line))
      id->host_id = std::string(absl::StripAsciiWhitespace(line));
    if (id->host_id.empty()) id->host_id = id->host;
    return id;
  }();
  return *identity;
}

}  // namespace mkd
