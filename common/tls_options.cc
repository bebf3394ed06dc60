#include "common/tls_options.h"

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace mkd {
namespace {

// A readable file holding at least one PEM block of `kind` ("CERTIFICATE",
// "PRIVATE KEY"), checked now so that a typo is an error at start rather
// than a failed handshake later.
absl::Status CheckPem(const std::string& path, absl::string_view kind, absl::string_view key) {
  absl::StatusOr<std::string> text = ReadFile(path, size_t{1} << 20);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": cannot read '", path, "': ", text.status().message()));
  }
  // "-----BEGIN PRIVATE KEY-----", "-----BEGIN EC PRIVATE KEY-----", ...
  const bool found = kind == "CERTIFICATE" ? absl::StrContains(*text, "-----BEGIN CERTIFICATE-----")
                                           : absl::StrContains(*text, "PRIVATE KEY-----");
  if (!found) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": '", path, "' holds no PEM ", kind, " block"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateTls(const TlsOptions& o, TlsRole role, absl::string_view prefix) {
  const auto name = [&](absl::string_view k) { return absl::StrCat(prefix, k); };
  // Flags spell it --insecure; config keys tls.insecure.
  const std::string insecure = prefix == "--tls-" ? "--insecure" : name("insecure");
  if (o.insecure) {
    for (const auto& [k, v] : {std::pair{"cert", &o.cert}, {"key", &o.key}, {"ca", &o.ca}}) {
      if (!v->empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(insecure, " is set but ", name(k), " is too: choose TLS or plaintext"));
      }
    }
    return absl::OkStatus();
  }
  if (o.cert.empty() && o.key.empty() && o.ca.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no TLS configured: set ", name("cert"), ", ", name("key"), " and ", name("ca"),
        " (docs/security.md), or ", insecure, " to run without TLS (plaintext)"));
  }
  if (o.refresh_s < 1 || o.refresh_s > 86400) {
    return absl::InvalidArgumentError(
        absl::StrCat(name("refresh_s"), ": must be in [1, 86400] seconds, got ", o.refresh_s));
  }
  if (o.ca.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name("ca"), ": required, to verify peers' certificates"));
  }
  MKD_RETURN_IF_ERROR(CheckPem(o.ca, "CERTIFICATE", name("ca")));
  // A client may go without an identity (to a server that does not ask for
  // one); a server never.
  if (role == TlsRole::kServer || !o.cert.empty() || !o.key.empty()) {
    if (o.cert.empty() || o.key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(name(o.cert.empty() ? "cert" : "key"),
                                                     ": required with ",
                                                     name(o.cert.empty() ? "key" : "cert")));
    }
    MKD_RETURN_IF_ERROR(CheckPem(o.cert, "CERTIFICATE", name("cert")));
    MKD_RETURN_IF_ERROR(CheckPem(o.key, "PRIVATE KEY", name("key")));
  }
  return absl::OkStatus();
}

void WarnIfInsecure(const TlsOptions& o) {
  if (!o.insecure) return;
  MKD_LOG(WARNING) << "tls.insecure is set: gRPC traffic is plaintext and unauthenticated; "
                      "anyone who can reach the port can use it";
}

}  // namespace mkd
