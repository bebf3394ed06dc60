// One way to log, for every binary: glog (Debian's libgoogle-glog, the one
// Debian's LibTorch logs through) behind a small stream macro, so that each
// line carries its time, level and component the same way:
//
//   I 2026-12-04 07:34:55.123456 mkd-teacher service.cc:89] serving port 50051
//
//   MKD_LOG(INFO) << "serving port " << port;
//   MKD_LOG(WARNING) << ...;  MKD_LOG(ERROR) << ...;
//
// Every line goes to stderr (containers and kubectl logs collect it there);
// stdout is left to what a command prints as its result. glog stays out of
// this header on purpose: a LibTorch built without glog (PyTorch's wheels)
// defines LOG and CHECK macros of its own, and the two must not meet in
// one translation unit. GLOG_minloglevel=1 hides INFO lines.
//
// A line is written when the statement ends, in one write. Do not log
// while holding a lock: the write can block on a full pipe.
#ifndef MKD_COMMON_LOG_H_
#define MKD_COMMON_LOG_H_

#include <sstream>
#include <string_view>

namespace mkd {

enum class LogSeverity { kInfo, kWarning, kError };

// Names the component every later line carries ("mkd-teacher"). Call once,
// first thing in main; lines logged before it carry the program's name.
void InitLogging(std::string_view component);

namespace log_internal {

// One line being written; the macro below makes them.
class LogLine {
 public:
  LogLine(LogSeverity severity, const char* file, int line)
      : severity_(severity), file_(file), line_(line) {}
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;

  std::ostream& stream() { return text_; }

 private:
  const LogSeverity severity_;
  const char* const file_;
  const int line_;
  std::ostringstream text_;
};

inline constexpr LogSeverity kINFO = LogSeverity::kInfo;
inline constexpr LogSeverity kWARNING = LogSeverity::kWarning;
inline constexpr LogSeverity kERROR = LogSeverity::kError;

}  // namespace log_internal
}  // namespace mkd

// MKD_LOG(INFO|WARNING|ERROR) << ...;
#define MKD_LOG(severity) \
  ::mkd::log_internal::LogLine(::mkd::log_internal::k##severity, __FILE__, __LINE__).stream()

#endif  // MKD_COMMON_LOG_H_
