// Shared helpers for the benchmarks: wall-clock timing of interleaved
// variants, so machine noise hits every variant alike, and median picking.
#ifndef MKD_BENCH_BENCH_UTIL_H_
#define MKD_BENCH_BENCH_UTIL_H_

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/micro_batch_stages.h"

namespace mkd::bench {

inline double Seconds(const std::function<void()>& fn) {
  auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Runs every variant once per round, `rounds` times, after one warm-up
// round; returns each variant's median seconds.
inline std::vector<double> TimeInterleaved(const std::vector<std::function<void()>>& variants,
                                           int rounds) {
  for (const auto& v : variants) v();  // Warm-up: allocator, thread pool, caches.
  std::vector<std::vector<double>> times(variants.size());
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < variants.size(); ++i) times[i].push_back(Seconds(variants[i]));
  }
  std::vector<double> medians;
  for (auto& t : times) medians.push_back(Median(t));
  return medians;
}

// The micro-batch stage table: one column per variant (the mean over its
// micro-batches, in ms), one row per stage that some variant has, then the
// sum of the stages. `stages[i]` are variant i's micro-batches.
inline void PrintStageTable(const std::vector<std::string>& names,
                            const std::vector<std::vector<StageSeconds>>& stages) {
  std::vector<StageMeans> means;
  for (const auto& s : stages) means.push_back(MeanOverMicroBatches(s));
  std::printf("%-16s", "stage (ms/mb)");
  for (const std::string& n : names) std::printf(" %14.14s", n.c_str());
  std::printf("\n");
  std::vector<double> total(names.size(), 0.0);
  for (Stage st : AllStages()) {
    bool any = false;
    for (const StageMeans& m : means) any = any || m.mean.has(st);
    if (!any) continue;
    std::printf("%-16s", std::string(StageName(st)).c_str());
    for (size_t i = 0; i < means.size(); ++i) {
      if (means[i].mean.has(st)) {
        std::printf(" %14.3f", 1e3 * means[i].mean.get(st));
        total[i] += means[i].mean.get(st);
      } else {
        std::printf(" %14s", "-");
      }
    }
    std::printf("\n");
  }
  std::printf("%-16s", "sum");
  for (double t : total) std::printf(" %14.3f", 1e3 * t);
  std::printf("\n");
}

// A benchmark's main(): parses `specs` from argv, runs `run`, and turns a
// failure (an error status or an exception) into "<name>: <reason>" on
// stderr and exit code 1.
inline int BenchMain(const char* name, int argc, char** argv, const std::vector<FlagSpec>& specs,
                     const std::function<absl::Status(const ParsedFlags&)>& run) {
  auto flags = ParseFlags(std::vector<std::string>(argv + 1, argv + argc), specs);
  absl::Status st = flags.status();
  if (st.ok()) {
    try {
      st = run(*flags);
    } catch (const std::exception& e) {
      st = absl::InternalError(e.what());
    }
  }
  if (!st.ok()) {
    std::fprintf(stderr, "%s: %s\n", name, std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace mkd::bench

#endif  // MKD_BENCH_BENCH_UTIL_H_
