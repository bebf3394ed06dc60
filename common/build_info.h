// What was built: the project's version (VERSION) and the git revision,
// written at build time by cmake/build_version.cmake. Every serving binary
// (coordinator, teacher, student) exports them as mkd_build_info
// (common/build_info_metric.h), so a scrape says which build answered.
#ifndef MKD_COMMON_BUILD_INFO_H_
#define MKD_COMMON_BUILD_INFO_H_

#include <string>

namespace mkd {

struct BuildInfo {
  std::string version;   // "0.5.0"
  std::string revision;  // git's short commit, "-dirty" when edited; "unknown".
};

const BuildInfo& GetBuildInfo();

}  // namespace mkd

#endif  // MKD_COMMON_BUILD_INFO_H_
