#include "rpc/transport_security.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace mkd::rpc {
namespace {

namespace gx = ::grpc::experimental;

std::shared_ptr<gx::FileWatcherCertificateProvider> Provider(const TlsOptions& o) {
  const auto refresh = static_cast<unsigned int>(o.refresh_s);
  if (o.cert.empty()) return std::make_shared<gx::FileWatcherCertificateProvider>(o.ca, refresh);
  return std::make_shared<gx::FileWatcherCertificateProvider>(o.key, o.cert, o.ca, refresh);
}

// The host name check gRPC makes by default, then the pool role: a
// certificate from the pool's CA is not enough to serve as a teacher.
class RoleVerifier : public gx::ExternalCertificateVerifier {
 public:
  explicit RoleVerifier(Role role)
      : role_(role), hostname_(std::make_shared<gx::HostNameCertificateVerifier>()) {}

  bool Verify(gx::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> callback, grpc::Status* sync_status) override {
    grpc::Status host;
    if (!hostname_->Verify(request, std::move(callback), &host)) {
      // gRPC's host name check is synchronous; should it ever not be, fail
      // closed rather than wait on a callback we did not plan for.
      *sync_status =
          grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "host name check did not finish");
      return true;
    }
    if (!host.ok()) {
      *sync_status = host;
      return true;
    }
    for (const grpc::string_ref& uri : request->uri_names()) {
      std::optional<Principal> p = PrincipalOfUri(absl::string_view(uri.data(), uri.size()));
      if (p && p->role == role_) {
        *sync_status = grpc::Status::OK;
        return true;
      }
    }
    *sync_status =
        grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                     absl::StrCat("the server's certificate carries no maskedkd ", RoleName(role_),
                                  " role (a URI SAN spiffe://<trust domain>/maskedkd/",
                                  RoleName(role_), "/<name>)"));
    return true;
  }
  void Cancel(gx::TlsCustomVerificationCheckRequest*) override {}

 private:
  const Role role_;
  const std::shared_ptr<gx::CertificateVerifier> hostname_;
};

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
                                                           const grpc::ChannelArguments* args,
                                                           std::optional<Role> peer_role) {
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
  options.set_certificate_verifier(
      peer_role ? gx::ExternalCertificateVerifier::Create<RoleVerifier>(*peer_role)
                : std::make_shared<gx::HostNameCertificateVerifier>());
  if (!o.server_name.empty()) channel_args.SetSslTargetNameOverride(o.server_name);
  return grpc::CreateCustomChannel(target, gx::TlsCredentials(options), channel_args);
}

}  // namespace mkd::rpc
