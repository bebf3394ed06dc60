#include "coordinator/config.h"

#include <gtest/gtest.h>

namespace mkd::coordinator {
namespace {

TEST(CoordinatorConfig, DefaultsAndOverrides) {
  auto c = ParseCoordinatorConfig("lease_s: 3\n", {"heartbeat_s=0.5", "listen=127.0.0.1:0",
                                                   "tls.insecure=true", "auth.insecure=true"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->lease_s, 3);
  EXPECT_EQ(c->heartbeat_s, 0.5);
  EXPECT_EQ(c->settle_s, 3) << "-1 means one lease";
  EXPECT_EQ(c->listen, "127.0.0.1:0");
}

TEST(CoordinatorConfig, ErrorsNameTheKey) {
  auto expect = [](const std::vector<std::string>& set, const std::string& fragment) {
    auto c = ParseCoordinatorConfig("", set);
    ASSERT_FALSE(c.ok()) << fragment;
    EXPECT_NE(std::string(c.status().message()).find(fragment), std::string::npos) << c.status();
  };
  expect({"lease_s=1", "heartbeat_s=1"}, "key 'lease_s': must be at least twice heartbeat_s");
  expect({"heartbeat_s=0"}, "key 'heartbeat_s'");
  expect({"listen=nowhere"}, "key 'listen'");
  expect({"explore_steps=0"}, "key 'explore_steps'");
  expect({"leases=3"}, "key 'leases': unknown key");
}

}  // namespace
}  // namespace mkd::coordinator
