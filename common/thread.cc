#include "common/thread.h"

#include <pthread.h>

#include <exception>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace mkd {
namespace {

// Runs the body; nothing it throws leaves the thread (an escaped exception
// would call std::terminate and take the whole process down).
absl::Status RunCatching(const std::string& name, const std::function<absl::Status()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("thread ", name, " threw: ", e.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat("thread ", name, " threw a non-standard exception"));
  }
}

}  // namespace

Thread::Thread(std::string name, std::function<absl::Status()> body, OnExit on_exit, Tag)
    : name_(std::move(name)), status_(std::make_unique<absl::Status>()) {
  thread_ = std::thread(
      [name = name_, status = status_.get(), body = std::move(body), on_exit = std::move(on_exit)] {
        pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
        absl::Status s = RunCatching(name, body);
        if (!s.ok()) MKD_LOG(ERROR) << "thread " << name << " ended: " << s;
        if (on_exit) {
          // The owner's callback must not take the process down either.
          absl::Status reported = RunCatching(name, [&] {
            on_exit(s);
            return absl::OkStatus();
          });
          if (!reported.ok()) MKD_LOG(ERROR) << "thread " << name << " on exit: " << reported;
        }
        *status = std::move(s);
      });
}

Thread::~Thread() { Join().IgnoreError(); }

Thread& Thread::operator=(Thread&& other) noexcept {
  if (this != &other) {
    Join().IgnoreError();
    name_ = std::move(other.name_);
    status_ = std::move(other.status_);
    thread_ = std::move(other.thread_);
  }
  return *this;
}

absl::Status Thread::Join() {
  if (thread_.joinable()) thread_.join();
  return status_ != nullptr ? *status_ : absl::OkStatus();
}

}  // namespace mkd
