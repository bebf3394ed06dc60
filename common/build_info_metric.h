// mkd_build_info{binary, version, revision} = 1 in a binary's registry:
// which build each scrape target runs (an upgrade halfway shows as two
// versions). Header-only: only the metrics code, which links
// prometheus-cpp already, includes it.
#ifndef MKD_COMMON_BUILD_INFO_METRIC_H_
#define MKD_COMMON_BUILD_INFO_METRIC_H_

#include <string>

#include "common/build_info.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace mkd {

inline void AddBuildInfoMetric(prometheus::Registry& registry, const std::string& binary) {
  const BuildInfo& b = GetBuildInfo();
  prometheus::BuildGauge()
      .Name("mkd_build_info")
      .Help("The build of this binary: always 1, its version and git revision as labels.")
      .Register(registry)
      .Add({{"binary", binary}, {"version", b.version}, {"revision", b.revision}})
      .Set(1);
}

}  // namespace mkd

#endif  // MKD_COMMON_BUILD_INFO_METRIC_H_
