// Which machine this process runs on: the host name (for people) and a
// host id that every process on the machine shares, containers included
// (the kernel's boot id), for telling whether two processes could share
// memory and whether they share hardware. Torch-free.
#ifndef MKD_COMMON_HOST_IDENTITY_H_
#define MKD_COMMON_HOST_IDENTITY_H_

#include <string>

namespace mkd {

struct HostIdentity {
  std::string host;     // gethostname(); "" if it fails.
  std::string host_id;  // /proc/sys/kernel/random/boot_id; else the host name.
};

// Read once per process; thread-safe.
const HostIdentity& ThisHost();

}  // namespace mkd

#endif  // MKD_COMMON_HOST_IDENTITY_H_
