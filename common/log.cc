#include "common/log.h"

#include <errno.h>
#include <glog/logging.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <deque>
#include <mutex>
#include <string>

namespace mkd {
namespace {

// The component's name, read by every line's prefix. Every name ever set
// stays alive (and reachable, for LeakSanitizer): lines may be logged from
// threads still running at exit, and a test may set it more than once.
std::atomic<const std::string*> component{nullptr};

const std::string* KeepName(std::string_view name) {
  static std::mutex mu;
  static auto* names = new std::deque<std::string>();
  std::lock_guard<std::mutex> lock(mu);
  return &names->emplace_back(name);  // A deque never moves its elements.
}

const char* ComponentName() {
  const std::string* name = component.load(std::memory_order_acquire);
  return name != nullptr ? name->c_str() : program_invocation_short_name;
}

// "I 2026-12-04 07:34:55.123456 mkd-teacher file.cc:42] " (UTC).
void WritePrefix(std::ostream& s, const google::LogMessageInfo& l, void*) {
  char when[32];
  std::tm utc;
  const std::time_t t = l.time.timestamp();
  gmtime_r(&t, &utc);
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &utc);
  char usec[8];
  std::snprintf(usec, sizeof(usec), ".%06d", static_cast<int>(l.time.usec()));
  s << l.severity[0] << ' ' << when << usec << ' ' << ComponentName() << ' ' << l.filename << ':'
    << l.line_number << ']';
}

void EnsureGlog() {
  static std::once_flag once;
  std::call_once(once, [] {
    FLAGS_logtostderr = true;  // No log files: stderr is collected.
    // Debian's LibTorch may have set glog up already (it logs through it).
    if (!google::IsGoogleLoggingInitialized()) {
      google::InitGoogleLogging(program_invocation_short_name, &WritePrefix, nullptr);
    }
  });
}

int GlogSeverity(LogSeverity s) {
  switch (s) {
    case LogSeverity::kInfo:
      return google::GLOG_INFO;
    case LogSeverity::kWarning:
      return google::GLOG_WARNING;
    case LogSeverity::kError:
      return google::GLOG_ERROR;
  }
  return google::GLOG_ERROR;
}

}  // namespace

void InitLogging(std::string_view component_name) {
  component.store(KeepName(component_name), std::memory_order_release);
  EnsureGlog();
}

namespace log_internal {

LogLine::~LogLine() {
  EnsureGlog();
  // glog shortens the path to its base name itself.
  google::LogMessage(file_, line_, GlogSeverity(severity_)).stream() << text_.str();
}

}  // namespace log_internal
}  // namespace mkd
