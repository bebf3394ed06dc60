// How far one mkd-coordinator goes: a real coordinator process on loopback,
// driven over real gRPC by this process as thousands of members.
//   1. `teachers` teachers and `jobs` jobs register from `threads` threads:
//      the time it takes, the coordinator's CPU seconds for it, and the call
//      latency of the first and the last 10% of the calls;
//   2. every member heartbeats once per `heartbeat-s` for `seconds`, while a
//      reader lists the first page of jobs (page_size 100) every 200 ms:
//      heartbeat and ListJobs latency percentiles, the coordinator's CPU;
//   3. the coordinator's RSS, per member;
//   4. the coordinator is SIGKILLed and restarted on the same port while
//      the members go on heartbeating: the time until it lists every member
//      again (a restarted coordinator rebuilds from heartbeats; the target
//      is within one lease).
// Jobs do not open WatchAssignment streams here (a job's assignment is
// pushed to one stream; this measures the pool's bookkeeping).
//
// Usage: coordinator_scale_bench [--teachers 2000] [--jobs 8000]
//          [--threads 16] [--heartbeat-s 5] [--seconds 20]
//          [--coordinator-bin build/bin/mkd-coordinator]
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "common/status_macros.h"
#include "common/thread.h"
#include "maskedkd/v1/coordinator.grpc.pb.h"
#include "rpc/channel_args.h"
#include "tests/process_util.h"

namespace mkd::bench {
namespace {

namespace v1 = ::maskedkd::v1;
using Clock = std::chrono::steady_clock;

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

// The coordinator's CPU seconds (user + system) and resident bytes, from /proc.
double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(f);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double RssBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) * 1024;
  }
  return 0;
}

struct Member {
  bool teacher;
  int index;
};

v1::TeacherInfo TeacherInfoOf(int i) {
  v1::TeacherInfo t;
  t.set_address(absl::StrCat("10.", i / 65536 % 256, ".", i / 256 % 256, ".", i % 256, ":50051"));
  t.set_model_id(absl::StrCat("vit@", i % 4));  // Four models, so jobs spread.
  t.set_capacity_tokens_per_s(1e6);
  t.set_instance(1000 + i);
  return t;
}

v1::JobInfo JobInfoOf(int i) {
  v1::JobInfo j;
  j.set_job_id(absl::StrCat("job-", i));
  j.set_model_id(absl::StrCat("vit@", i % 4));
  j.set_weight(1);
  j.set_batch_size(256);
  j.set_kept_patches(98);
  j.set_max_teachers(2);
  j.set_instance(5000 + i);
  return j;
}

// One call for `m`: its registration or heartbeat; the latency in seconds.
double Call(v1::CoordinatorService::Stub* stub, const Member& m, bool heartbeat, bool* ok) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const auto t0 = Clock::now();
  grpc::Status st;
  if (m.teacher && !heartbeat) {
    v1::RegisterTeacherRequest req;
    *req.mutable_info() = TeacherInfoOf(m.index);
    v1::RegisterTeacherResponse resp;
    st = stub->RegisterTeacher(&ctx, req, &resp);
  } else if (m.teacher) {
    v1::TeacherHeartbeatRequest req;
    *req.mutable_info() = TeacherInfoOf(m.index);
    req.mutable_load()->set_healthy(true);
    v1::TeacherHeartbeatResponse resp;
    st = stub->TeacherHeartbeat(&ctx, req, &resp);
  } else if (!heartbeat) {
    v1::RegisterJobRequest req;
    *req.mutable_info() = JobInfoOf(m.index);
    v1::RegisterJobResponse resp;
    st = stub->RegisterJob(&ctx, req, &resp);
  } else {
    v1::JobHeartbeatRequest req;
    *req.mutable_info() = JobInfoOf(m.index);
    v1::JobHeartbeatResponse resp;
    st = stub->JobHeartbeat(&ctx, req, &resp);
  }
  *ok = st.ok();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Coordinator {
  std::unique_ptr<testing::ChildProcess> process;
  int port = 0;
};

absl::StatusOr<Coordinator> StartCoordinator(const std::string& bin, const std::string& dir,
                                             int port, double heartbeat_s) {
  Coordinator c;
  c.process = std::make_unique<testing::ChildProcess>(
      bin,
      std::vector<std::string>{"--set", absl::StrCat("listen=127.0.0.1:", port), "--set",
                               "metrics_listen=", "--set", "tls.insecure=true", "--set",
                               "auth.insecure=true", "--set",
                               absl::StrCat("heartbeat_s=", heartbeat_s), "--set",
                               absl::StrCat("lease_s=", 3 * heartbeat_s)},
      dir + "/coordinator");
  std::optional<std::string> line = c.process->WaitForLine("listening on port");
  if (!line) return absl::UnavailableError("mkd-coordinator did not start: " + c.process->err());
  c.port = testing::NumberAfter(*line, "on port ");
  return c;
}

absl::Status Run(const ParsedFlags& f) {
  MKD_ASSIGN_OR_RETURN(int64_t teachers, f.GetInt("teachers", 2000));
  MKD_ASSIGN_OR_RETURN(int64_t jobs, f.GetInt("jobs", 8000));
  MKD_ASSIGN_OR_RETURN(int64_t threads, f.GetInt("threads", 16));
  MKD_ASSIGN_OR_RETURN(int64_t heartbeat_s, f.GetInt("heartbeat-s", 5));
  MKD_ASSIGN_OR_RETURN(int64_t seconds, f.GetInt("seconds", 20));
  // ChildProcess runs BinDir()/bin: an absolute path goes through "/".
  std::string bin = f.Get("coordinator-bin").value_or(testing::BinDir() + "/mkd-coordinator");
  bin = std::filesystem::absolute(bin).string();
  setenv("MKD_BIN_DIR", "/", 1);
  const std::string dir = std::filesystem::temp_directory_path() / "mkd_coordinator_scale_bench";
  std::filesystem::create_directories(dir);

  MKD_ASSIGN_OR_RETURN(Coordinator c, StartCoordinator(bin, dir, 0, heartbeat_s));
  std::vector<Member> members;
  for (int i = 0; i < teachers; ++i) members.push_back({true, i});
  for (int i = 0; i < jobs; ++i) members.push_back({false, i});
  const int n = static_cast<int>(members.size());
  std::printf("coordinator_scale_bench: %d teachers, %d jobs, %d client threads, heartbeat %d s\n",
              static_cast<int>(teachers), static_cast<int>(jobs), static_cast<int>(threads),
              static_cast<int>(heartbeat_s));

  // Each client thread keeps its own channel (its own connection).
  std::atomic<int> port{c.port};
  auto stub_for = [&port] {
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);
    rpc::SetQuickReconnect(&args);  // Reconnect within a second of the restart in step 4.
    return v1::CoordinatorService::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", port.load()), grpc::InsecureChannelCredentials(), args));
  };

  // 1. Registration: members interleaved (teachers and jobs mixed) in order.
  std::vector<double> reg_latency(n);
  std::atomic<int> next{0}, failures{0};
  const double cpu0 = CpuSeconds(c.process->pid());
  const auto r0 = Clock::now();
  {
    std::vector<Thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back("mkd-bench", [&] {
        auto stub = stub_for();
        for (int i; (i = next.fetch_add(1)) < n;) {
          bool ok = false;
          // Teachers first, then jobs in the order they would start.
          reg_latency[i] = Call(stub.get(), members[i], false, &ok);
          if (!ok) failures.fetch_add(1);
        }
      });
    }
    for (Thread& t : pool) t.Join().IgnoreError();
  }
  const double reg_s = std::chrono::duration<double>(Clock::now() - r0).count();
  const double reg_cpu = CpuSeconds(c.process->pid()) - cpu0;
  const std::vector<double> first(reg_latency.begin(), reg_latency.begin() + n / 10);
  const std::vector<double> last(reg_latency.end() - n / 10, reg_latency.end());
  std::printf(
      "\n1. registration of %d members: %.2f s (%.0f calls/s), coordinator CPU %.2f s, "
      "%d failed\n   latency median first 10%% %.2f ms, last 10%% %.2f ms; p99 %.2f ms\n",
      n, reg_s, n / reg_s, reg_cpu, failures.load(), 1e3 * Percentile(first, 0.5),
      1e3 * Percentile(last, 0.5), 1e3 * Percentile(reg_latency, 0.99));

  // 2. Steady state: each member heartbeats once per heartbeat_s, spread
  // evenly; a reader lists the first page of jobs.
  std::mutex mu;
  std::vector<double> hb_latency, list_latency;
  std::atomic<bool> stop{false};
  std::atomic<int> hb_failures{0};
  auto heartbeat_all = [&](double run_s, std::vector<double>* sink) {
    std::vector<Thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back("mkd-bench", [&, t, run_s, sink] {  // The arguments outlive no call.
        auto stub = stub_for();
        std::vector<double> mine;
        const auto start = Clock::now();
        const double period = static_cast<double>(heartbeat_s);
        for (int round = 0; !stop; ++round) {
          for (int i = t; i < n && !stop; i += static_cast<int>(threads)) {
            // Member i's slot in this round: spread over the period.
            const double at = round * period + period * i / n;
            if (at > run_s) {
              stop = true;
              break;
            }
            std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                                      std::chrono::duration<double>(at)));
            bool ok = false;
            mine.push_back(Call(stub.get(), members[i], true, &ok));
            if (!ok) hb_failures.fetch_add(1);
          }
        }
        std::lock_guard<std::mutex> lock(mu);
        if (sink) sink->insert(sink->end(), mine.begin(), mine.end());
      });
    }
    return pool;
  };
  const double cpu1 = CpuSeconds(c.process->pid());
  const auto s0 = Clock::now();
  std::vector<Thread> beaters = heartbeat_all(static_cast<double>(seconds), &hb_latency);
  Thread lister("mkd-lister", [&] {
    auto stub = stub_for();
    while (!stop) {
      grpc::ClientContext ctx;
      v1::ListJobsRequest req;
      req.set_page_size(100);
      v1::ListJobsResponse resp;
      const auto t0 = Clock::now();
      if (stub->ListJobs(&ctx, req, &resp).ok()) {
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        std::lock_guard<std::mutex> lock(mu);
        list_latency.push_back(s);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  for (Thread& t : beaters) t.Join().IgnoreError();
  lister.Join().IgnoreError();
  const double steady_cpu = CpuSeconds(c.process->pid()) - cpu1;
  // Longer than `seconds` when the coordinator cannot keep up.
  const double steady_s = std::chrono::duration<double>(Clock::now() - s0).count();
  std::printf(
      "\n2. %lld s of heartbeats (%.1f s wall; %zu calls, %d failed), coordinator CPU %.2f s "
      "(%.0f%% of a core)\n   heartbeat p50 %.2f ms, p99 %.2f ms; ListJobs (first page of 100) "
      "p50 %.2f ms, p99 %.2f ms (%zu calls)\n",
      static_cast<long long>(seconds), steady_s, hb_latency.size(), hb_failures.load(), steady_cpu,
      100 * steady_cpu / steady_s, 1e3 * Percentile(hb_latency, 0.5),
      1e3 * Percentile(hb_latency, 0.99), 1e3 * Percentile(list_latency, 0.5),
      1e3 * Percentile(list_latency, 0.99), list_latency.size());

  // 3. Memory.
  const double rss = RssBytes(c.process->pid());
  // The whole process over the members: the empty coordinator's own
  // ~19 MiB included.
  std::printf("\n3. coordinator RSS %.1f MiB, %.1f KiB per member (whole RSS / members)\n",
              rss / (1 << 20), rss / 1024 / n);

  // 4. SIGKILL and restart on the same port, the members heartbeating on.
  const int same_port = c.port;
  c.process->Signal(SIGKILL);
  c.process->Wait();
  stop = false;
  const double lease_s = 3.0 * static_cast<double>(heartbeat_s);
  const auto k0 = Clock::now();
  beaters = heartbeat_all(4 * lease_s, nullptr);
  absl::StatusOr<Coordinator> restarted = StartCoordinator(bin, dir, same_port, heartbeat_s);
  if (!restarted.ok()) {  // The heartbeating threads are joined before leaving.
    stop = true;
    for (Thread& t : beaters) t.Join().IgnoreError();
    return restarted.status();
  }
  Coordinator again = *std::move(restarted);
  double rebuilt_s = -1;
  int listed_jobs = 0, listed_teachers = 0;
  auto stub = stub_for();
  while (std::chrono::duration<double>(Clock::now() - k0).count() < 4 * lease_s) {
    grpc::ClientContext ctx;
    v1::ListJobsRequest req;
    req.set_page_size(1);
    v1::ListJobsResponse jobs_resp;
    grpc::ClientContext ctx2;
    v1::ListTeachersRequest treq;
    treq.set_page_size(1);
    v1::ListTeachersResponse teachers_resp;
    if (stub->ListJobs(&ctx, req, &jobs_resp).ok() &&
        stub->ListTeachers(&ctx2, treq, &teachers_resp).ok() &&
        // A coordinator without paging (an older build) lists everything.
        (listed_jobs = std::max(jobs_resp.total(), jobs_resp.jobs_size())) == jobs &&
        (listed_teachers = std::max(teachers_resp.total(), teachers_resp.teachers_size())) ==
            teachers) {
      rebuilt_s = std::chrono::duration<double>(Clock::now() - k0).count();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  stop = true;
  for (Thread& t : beaters) t.Join().IgnoreError();
  if (rebuilt_s < 0) {
    std::printf(
        "\n4. restarted coordinator: NOT rebuilt within %.0f s (%d jobs, %d teachers "
        "listed)\n",
        4 * lease_s, listed_jobs, listed_teachers);
  } else {
    std::printf(
        "\n4. SIGKILLed and restarted: every member listed again %.2f s after the kill "
        "(lease %.0f s)\n",
        rebuilt_s, lease_s);
  }
  again.process->Signal(SIGTERM);
  again.process->Wait();
  return absl::OkStatus();
}

}  // namespace
}  // namespace mkd::bench

int main(int argc, char** argv) {
  return mkd::bench::BenchMain(
      "coordinator_scale_bench", argc, argv,
      {{"teachers"}, {"jobs"}, {"threads"}, {"heartbeat-s"}, {"seconds"}, {"coordinator-bin"}},
      mkd::bench::Run);
}
