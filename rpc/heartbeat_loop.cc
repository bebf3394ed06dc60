#include "rpc/heartbeat_loop.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "rpc/pool_auth.h"
#include "rpc/retry.h"
#include "rpc/status.h"

namespace mkd::rpc {

HeartbeatLoop::HeartbeatLoop(Options options, Call call)
    : options_(std::move(options)), call_(std::move(call)) {
  thread_ = Thread(
      "mkd-heartbeat", [this] { Run(); },
      [this](const absl::Status& s) {
        // The loop died of a bug: to a job that is as final as a
        // refusal (it is no longer a member); a teacher keeps
        // serving, and the thread has logged it.
        if (!s.ok() && options_.on_refused) options_.on_refused(s);
      });
}

HeartbeatLoop::~HeartbeatLoop() {
  Stop();
  thread_.Join().IgnoreError();  // Reported by the thread as it ended.
}

void HeartbeatLoop::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  wake_.SignalAll();
}

void HeartbeatLoop::Run() {
  absl::Duration interval = absl::Seconds(1);
  // Capped by the interval below: a restarted coordinator is not flooded
  // by every member at once, nor left waiting longer than a heartbeat.
  Backoff backoff(options_.retry, absl::Hours(1));
  bool warned = false;
  while (true) {
    {
      MutexLock lock(&mu_);
      if (stop_) return;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + std::max(interval, absl::Seconds(2))));
    if (options_.token) AddTokenMetadata(&ctx, options_.token());
    const grpc::Status st = call_(&ctx, &interval);
    if (!st.ok() && options_.on_refused && IsRefusal(FromGrpcStatus(st).code())) {
      Stop();  // Ours to fix: retrying would send the same.
      options_.on_refused(FromGrpcStatus(
          st, absl::StrCat("coordinator ", options_.coordinator, " refused ", options_.member)));
      return;
    }
    if (!st.ok() && !warned) {
      MKD_LOG(WARNING) << options_.member << ": coordinator " << options_.coordinator << ": "
                       << st.error_message() << "; retrying (" << options_.while_away << ")";
      warned = true;
    }
    if (st.ok()) {
      warned = false;
      backoff.Reset();
    }
    const absl::Duration wait =
        st.ok() ? interval : std::min(backoff.Next(), std::max(interval, options_.retry));
    const absl::Time next = absl::Now() + wait;
    MutexLock lock(&mu_);
    while (!stop_ && wake_.WaitWithDeadline(&mu_, next)) {
    }
  }
}

}  // namespace mkd::rpc
