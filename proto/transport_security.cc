#include "proto/transport_security.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "common/status_macros.h"

namespace mkd {
namespace {

namespace gx = ::grpc::experimental;

std::shared_ptr<gx::FileWatcherCertificateProvider> Provider(const TlsOptions& o) {
  const auto refresh = static_cast<unsigned int>(o.refresh_s);
  if (o.cert.empty()) return std::make_shared<gx::FileWatcherCertificateProvider>(o.ca, refresh);
  return std::make_shared<gx::FileWatcherCertificateProvider>(o.key, o.cert, o.ca, refresh);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& o) {
  MKD_RETURN_IF_ERROR(ValidateTls(o, TlsRole::kServer, "tls."));
  if (o.insecure) return grpc::InsecureServerCredentials();
  gx::TlsServerCredentialsOptions options(Provider(o));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(o.require_client_cert
                                    ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                    : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  return gx::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& target,
                                                           const TlsOptions& o,
                                                           const grpc::ChannelArguments* args) {
  MKD_RETURN_IF_ERROR(ValidateTls(o, TlsRole::kClient, "tls."));
  grpc::ChannelArguments channel_args = args ? *args : grpc::ChannelArguments();
  if (o.insecure) {
    return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), channel_args);
  }
  gx::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Provider(o));
  options.watch_root_certs();
  if (!o.cert.empty()) options.watch_identity_key_cert_pairs();
  // The chain against `ca`, and the server's name against its certificate.
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(std::make_shared<gx::HostNameCertificateVerifier>());
  if (!o.server_name.empty()) channel_args.SetSslTargetNameOverride(o.server_name);
  return grpc::CreateCustomChannel(target, gx::TlsCredentials(options), channel_args);
}

}  // namespace mkd
