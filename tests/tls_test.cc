// Mutual TLS on a real mkd-coordinator server over loopback, with
// certificates made by openssl (scripts/make_certs.sh) when the suite
// starts: success, a wrong CA on either side, expired certificates, a
// missing client certificate, a wrong server name, plaintext refused, and
// rotation (files replaced while the server runs are used without a
// restart). The teacher and the student use the same code
// (rpc/transport_security.h); tests/pool_test.cc runs a whole pool over
// mutual TLS. Torch-free.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "coordinator/config.h"
#include "coordinator/server.h"
#include "maskedkd/v1/coordinator.grpc.pb.h"
#include "rpc/transport_security.h"
#include "teacher_server/server_config.h"
#include "tests/process_util.h"

namespace mkd {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::maskedkd::v1;

std::string Dir() { return ::testing::TempDir() + "/tls_certs"; }
std::string Pem(const std::string& name) { return Dir() + "/" + name + ".pem"; }
std::string Key(const std::string& name) { return Dir() + "/" + name + ".key"; }

void MakeCerts(const std::string& dir, const std::string& args) {
  const std::string cmd = "scripts/make_certs.sh " + dir + " " + args;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::remove_all(Dir());
    MakeCerts(Dir(), "ca");
    MakeCerts(Dir(), "cert server");
    MakeCerts(Dir(), "cert client");
    MakeCerts(Dir(), "expired old");
    // Another CA, and a client it signed: a stranger to this pool.
    MakeCerts(Dir() + "/other", "ca");
    MakeCerts(Dir() + "/other", "cert stranger");
  }

  static TlsOptions ServerTls(const std::string& name) {
    TlsOptions t;
    t.cert = Pem(name);
    t.key = Key(name);
    t.ca = Pem("ca");
    t.refresh_s = 1;
    return t;
  }
  static TlsOptions ClientTls(const std::string& name) {
    TlsOptions t;
    if (!name.empty()) {
      t.cert = Pem(name);
      t.key = Key(name);
    }
    t.ca = Pem("ca");
    return t;
  }

  void StartServer(const TlsOptions& tls) {
    coordinator::CoordinatorConfig c;
    c.listen = "127.0.0.1:0";
    c.metrics_listen = "";
    c.tls = tls;
    c.auth.insecure = true;  // The handshake is under test here; roles: pool_auth_test.
    auto s = coordinator::CoordinatorServer::Start(c);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  std::string Address() const { return "127.0.0.1:" + std::to_string(server_->port()); }

  // One ListJobs over a fresh channel (a new handshake); on success,
  // *peer_cn is the common name of the certificate the server presented.
  grpc::Status Call(const TlsOptions& client, std::string* peer_cn = nullptr) {
    auto channel = rpc::MakeChannel(Address(), client, nullptr);
    if (!channel.ok()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad options");
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListJobsResponse resp;
    grpc::Status st =
        v1::CoordinatorService::NewStub(*channel)->ListJobs(&ctx, v1::ListJobsRequest(), &resp);
    if (st.ok() && peer_cn != nullptr) {
      auto cn = ctx.auth_context()->FindPropertyValues("x509_common_name");
      *peer_cn = cn.empty() ? "" : std::string(cn[0].data(), cn[0].size());
    }
    return st;
  }

  std::unique_ptr<coordinator::CoordinatorServer> server_;
};

TEST_F(TlsTest, MutualTlsConnects) {
  StartServer(ServerTls("server"));
  std::string cn;
  grpc::Status st = Call(ClientTls("client"), &cn);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(cn, "server");
  // The certificates name the pool too: a client dialling an address that
  // is not in them can check that name instead.
  TlsOptions by_name = ClientTls("client");
  by_name.server_name = "maskedkd.pool";
  EXPECT_TRUE(Call(by_name).ok());
}

TEST_F(TlsTest, AServerOfAnotherCaIsRefused) {
  StartServer(ServerTls("server"));
  TlsOptions client = ClientTls("client");
  client.ca = Dir() + "/other/ca.pem";
  EXPECT_EQ(Call(client).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, AClientOfAnotherCaIsRefused) {
  StartServer(ServerTls("server"));
  TlsOptions client = ClientTls("");
  client.cert = Dir() + "/other/stranger.pem";
  client.key = Dir() + "/other/stranger.key";
  EXPECT_EQ(Call(client).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, AClientWithoutACertificateIsRefused) {
  StartServer(ServerTls("server"));
  EXPECT_EQ(Call(ClientTls("")).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, ExpiredCertificatesAreRefusedOnBothSides) {
  StartServer(ServerTls("old"));
  EXPECT_EQ(Call(ClientTls("client")).error_code(), grpc::StatusCode::UNAVAILABLE);
  server_.reset();
  StartServer(ServerTls("server"));
  EXPECT_EQ(Call(ClientTls("old")).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Call(ClientTls("client")).ok());
}

TEST_F(TlsTest, AServerNameNotInTheCertificateIsRefused) {
  StartServer(ServerTls("server"));
  TlsOptions client = ClientTls("client");
  client.server_name = "someone-else.example";
  EXPECT_EQ(Call(client).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, PlaintextClientsGetNothingFromATlsServer) {
  StartServer(ServerTls("server"));
  TlsOptions plain;
  plain.insecure = true;
  EXPECT_EQ(Call(plain).error_code(), grpc::StatusCode::UNAVAILABLE);
}

// The server re-reads its files every refresh_s (1 s here): an expired
// certificate replaced on disk starts working, and a replaced one is what
// new connections see, all without a restart. Bounded polling, 20 s.
TEST_F(TlsTest, RotatedCertificatesAreUsedWithoutARestart) {
  const std::string rot = Dir() + "/rot";
  fs::create_directories(rot);
  fs::copy_file(Pem("old"), rot + "/s.pem");
  fs::copy_file(Key("old"), rot + "/s.key");
  TlsOptions tls = ServerTls("server");
  tls.cert = rot + "/s.pem";
  tls.key = rot + "/s.key";
  StartServer(tls);
  ASSERT_EQ(Call(ClientTls("client")).error_code(), grpc::StatusCode::UNAVAILABLE);

  auto rotate_to = [&](const std::string& cn) {
    MakeCerts(Dir(), "cert next " + cn);
    // Key first: the watcher may read between the two renames.
    fs::rename(Key("next"), rot + "/s.key");
    fs::rename(Pem("next"), rot + "/s.pem");
  };
  auto wait_for_cn = [&](const std::string& want) {
    std::string cn;
    for (int i = 0; i < 80; ++i) {
      if (Call(ClientTls("client"), &cn).ok() && cn == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    ADD_FAILURE() << "still '" << cn << "' after 20 s, want '" << want << "'";
    return false;
  };
  rotate_to("rotated-a");
  ASSERT_TRUE(wait_for_cn("rotated-a"));
  rotate_to("rotated-b");
  EXPECT_TRUE(wait_for_cn("rotated-b"));
}

TEST_F(TlsTest, PlaintextOnlyWhenAskedForByName) {
  auto none = coordinator::ParseCoordinatorConfig("", {});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no TLS configured"), std::string::npos) << none.status();
  // Plaintext also needs a pool secret, or auth.insecure by name.
  auto open = coordinator::ParseCoordinatorConfig("", {"tls.insecure=true"});
  ASSERT_FALSE(open.ok());
  EXPECT_NE(open.status().message().find("auth.insecure: true"), std::string::npos)
      << open.status();
  EXPECT_TRUE(
      coordinator::ParseCoordinatorConfig("", {"tls.insecure=true", "auth.insecure=true"}).ok());
  auto both = coordinator::ParseCoordinatorConfig("", {"tls.insecure=true", "tls.ca=" + Pem("ca")});
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.status().message().find("tls.insecure is set but tls.ca is too"),
            std::string::npos)
      << both.status();
  auto teacher =
      teacher::ParseTeacherServerConfig("model: deit_tiny_patch16_224\nweights: w\n",
                                        {"tls.cert=" + Pem("server"), "tls.key=" + Key("server")});
  ASSERT_FALSE(teacher.ok());
  EXPECT_NE(teacher.status().message().find("tls.ca: required"), std::string::npos)
      << teacher.status();
}

TEST_F(TlsTest, FilesAreCheckedAtStartWithErrorsThatNameTheKey) {
  TlsOptions t;
  t.ca = "/nonexistent/ca.pem";
  t.cert = Pem("server");
  t.key = Key("server");
  absl::Status st = ValidateTls(t, TlsRole::kServer, "tls.");
  EXPECT_NE(st.message().find("tls.ca: cannot read '/nonexistent/ca.pem'"), std::string::npos)
      << st;
  t.ca = Key("server");  // A key where a certificate belongs.
  st = ValidateTls(t, TlsRole::kServer, "tls.");
  EXPECT_NE(st.message().find("holds no PEM CERTIFICATE"), std::string::npos) << st;
  t.ca = Pem("ca");
  t.key = "";
  st = ValidateTls(t, TlsRole::kServer, "tls.");
  EXPECT_NE(st.message().find("tls.key: required with tls.cert"), std::string::npos) << st;
  t.refresh_s = 0;
  t.key = Key("server");
  st = ValidateTls(t, TlsRole::kServer, "tls.");
  EXPECT_NE(st.message().find("tls.refresh_s"), std::string::npos) << st;
  // A client may go without an identity; a server may not.
  TlsOptions anonymous;
  anonymous.ca = Pem("ca");
  EXPECT_TRUE(ValidateTls(anonymous, TlsRole::kClient, "tls.").ok());
  EXPECT_FALSE(ValidateTls(anonymous, TlsRole::kServer, "tls.").ok());
}

// mkd-health (the probe in every image) speaks TLS through its flags, and
// without them says what to set.
TEST_F(TlsTest, TheHealthProbeSpeaksMutualTls) {
  StartServer(ServerTls("server"));
  testing::ChildProcess ok(
      "mkd-health",
      {Address(), "--tls-ca", Pem("ca"), "--tls-cert", Pem("client"), "--tls-key", Key("client")},
      Dir() + "/health_ok");
  EXPECT_EQ(ok.Wait(), 0) << ok.err();
  EXPECT_NE(ok.out().find("SERVING"), std::string::npos) << ok.out();
  testing::ChildProcess bare("mkd-health", {Address()}, Dir() + "/health_bare");
  EXPECT_EQ(bare.Wait(), 2);
  EXPECT_NE(bare.err().find("--tls-"), std::string::npos) << bare.err();
  EXPECT_NE(bare.err().find("--insecure"), std::string::npos) << bare.err();
}

}  // namespace
}  // namespace mkd
