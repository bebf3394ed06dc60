// Every metric mkd-coordinator exports, with its name and help string, in
// one place (mkd_coordinator_<what>_<unit>; counters end in _total). The
// pool's counts are copied in by Update on the coordinator's ticker.
// Thread-safe.
#ifndef MKD_COORDINATOR_METRICS_H_
#define MKD_COORDINATOR_METRICS_H_

#include <map>
#include <memory>
#include <string>

#include "common/mutex.h"
#include "coordinator/pool.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace mkd::coordinator {

class CoordinatorMetrics {
 public:
  CoordinatorMetrics();

  // Sets the gauges to `stats` and moves the counters up to its totals.
  void Update(const PoolStats& stats);
  // One RPC rejected for bad input.
  void CountInvalidRequest() { invalid_requests_.Increment(); }
  double invalid_requests() const { return invalid_requests_.Value(); }
  // One RPC refused by the pool's checks (rpc/pool_auth.h's reasons).
  void CountAuthRefusal(const std::string& reason);
  double auth_refusals(const std::string& reason);

  // The exposition text of every metric (text format 0.0.4).
  std::string Serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>& teachers_;
  prometheus::Gauge& jobs_;
  prometheus::Gauge& assignments_;
  prometheus::Gauge& waiting_jobs_;
  prometheus::Gauge& capacity_;
  prometheus::Gauge& served_;
  prometheus::Counter& reassignments_;
  prometheus::Counter& missed_heartbeats_;
  prometheus::Counter& invalid_requests_;
  prometheus::Family<prometheus::Counter>& auth_refusals_;
  prometheus::Family<prometheus::Gauge>& planned_;

  Mutex mu_;
  std::map<std::string, prometheus::Gauge*> planned_by_job_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mkd::coordinator

#endif  // MKD_COORDINATOR_METRICS_H_
