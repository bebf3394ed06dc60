// One way to run a thread. mkd::Thread starts a named thread (the name shows
// in top -H, gdb and sanitizer reports), catches whatever escapes its body,
// and hands the outcome to its owner as an absl::Status: through Join(), and
// at once through an optional on_exit callback (called on the thread
// however the body ended, OK included, before Join returns), so that an
// owner can fail
// its pending work the moment a thread it depends on is gone instead of
// waiting on it forever. A failed thread's status is also logged.
//
//   worker_ = Thread("mkd-batcher", [this] { return Loop(); },
//                    [this](const absl::Status& s) { FailAll(s); });
//   ...
//   absl::Status s = worker_.Join();
//
// The body returns absl::Status, or nothing (then it ends OK unless it
// throws). Like std::jthread, destroying a running Thread joins it.
#ifndef MKD_COMMON_THREAD_H_
#define MKD_COMMON_THREAD_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"

namespace mkd {

class Thread {
 public:
  using OnExit = std::function<void(const absl::Status&)>;

  Thread() = default;  // Runs nothing; Join() returns OK.

  // Starts `body` on a thread called `name` (the OS keeps 15 characters).
  template <typename Body>
  Thread(std::string name, Body body, OnExit on_exit = nullptr)
      : Thread(std::move(name), Adapt(std::move(body)), std::move(on_exit), Tag{}) {}

  ~Thread();  // Joins.
  Thread(Thread&& other) noexcept = default;
  // Joins what this held before taking `other`'s thread.
  Thread& operator=(Thread&& other) noexcept;
  Thread(const Thread&) = delete;
  Thread& operator=(const Thread&) = delete;

  // Waits for the body to end; its status, or kInternal naming the thread
  // and what it threw. OK for an empty Thread; a second call returns the
  // same status again.
  absl::Status Join();
  bool joinable() const { return thread_.joinable(); }
  const std::string& name() const { return name_; }

 private:
  struct Tag {};
  Thread(std::string name, std::function<absl::Status()> body, OnExit on_exit, Tag);

  template <typename Body>
  static std::function<absl::Status()> Adapt(Body body) {
    if constexpr (std::is_void_v<std::invoke_result_t<Body&>>) {
      return [body = std::move(body)]() mutable {
        body();
        return absl::OkStatus();
      };
    } else {
      return std::function<absl::Status()>(std::move(body));
    }
  }

  std::string name_;
  // Written by the thread before it ends, read after the join.
  std::unique_ptr<absl::Status> status_;
  std::thread thread_;
};

}  // namespace mkd

#endif  // MKD_COMMON_THREAD_H_
