// Early-return helpers for absl::Status / absl::StatusOr, and Annotate().
//
// Debian's Abseil (20220623) ships no public RETURN_IF_ERROR/ASSIGN_OR_RETURN,
// so the project keeps this one small header of its own.
#ifndef MKD_COMMON_STATUS_MACROS_H_
#define MKD_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

#define MKD_STATUS_CONCAT_INNER_(a, b) a##b
#define MKD_STATUS_CONCAT_(a, b) MKD_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` yields a non-OK status.
#define MKD_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::absl::Status mkd_status_ = (expr);       \
    if (!mkd_status_.ok()) return mkd_status_; \
  } while (0)

// `MKD_ASSIGN_OR_RETURN(auto x, Foo());` evaluates Foo() (a StatusOr<T>),
// returns its status on error, else moves the value into `x`.
#define MKD_ASSIGN_OR_RETURN(lhs, expr) \
  MKD_ASSIGN_OR_RETURN_IMPL_(MKD_STATUS_CONCAT_(mkd_statusor_, __LINE__), lhs, expr)

#define MKD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                               \
  if (!statusor.ok()) return statusor.status();         \
  lhs = std::move(statusor).value()

namespace mkd {

// `status` with "<context>: " put before its message (same code); OK stays OK.
inline absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

}  // namespace mkd

#endif  // MKD_COMMON_STATUS_MACROS_H_
