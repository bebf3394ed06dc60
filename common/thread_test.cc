#include "common/thread.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <stdexcept>
#include <string>

#include "common/mutex.h"

namespace mkd {
namespace {

TEST(ThreadTest, JoinReturnsTheBodysStatus) {
  Thread t("mkd-test", [] { return absl::DataLossError("torn record"); });
  absl::Status s = t.Join();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "torn record");
  EXPECT_EQ(t.Join().code(), absl::StatusCode::kDataLoss);  // Again, the same.
}

TEST(ThreadTest, AVoidBodyEndsOk) {
  std::atomic<int> ran{0};
  Thread t("mkd-test", [&] { ran = 1; });
  EXPECT_TRUE(t.Join().ok());
  EXPECT_EQ(ran, 1);
}

TEST(ThreadTest, AnEscapedExceptionBecomesAStatusNamingTheThread) {
  Thread t("mkd-reader", []() -> absl::Status { throw std::runtime_error("socket gone"); });
  absl::Status s = t.Join();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("mkd-reader"), std::string::npos) << s;
  EXPECT_NE(s.message().find("socket gone"), std::string::npos) << s;
}

TEST(ThreadTest, ANonStandardThrowIsCaughtToo) {
  Thread t("mkd-test", [] { throw 7; });
  EXPECT_EQ(t.Join().code(), absl::StatusCode::kInternal);
}

TEST(ThreadTest, OnExitHearsTheStatusBeforeJoin) {
  Mutex mu;
  CondVar heard_cv;
  absl::Status heard = absl::UnknownError("not yet");
  bool told = false;
  Thread t(
      "mkd-test", []() -> absl::Status { throw std::logic_error("bad index"); },
      [&](const absl::Status& s) {
        MutexLock lock(&mu);
        heard = s;
        told = true;
        heard_cv.SignalAll();
      });
  {
    MutexLock lock(&mu);
    while (!told) heard_cv.Wait(&mu);
    EXPECT_EQ(heard.code(), absl::StatusCode::kInternal);
    EXPECT_NE(heard.message().find("bad index"), std::string::npos);
  }
  EXPECT_EQ(t.Join(), heard);
}

TEST(ThreadTest, AThrowingOnExitDoesNotTakeTheProcessDown) {
  Thread t(
      "mkd-test", [] {}, [](const absl::Status&) { throw std::runtime_error("owner bug"); });
  EXPECT_TRUE(t.Join().ok());  // The body's status, not the callback's.
}

TEST(ThreadTest, TheThreadCarriesItsName) {
  std::string seen;
  Thread t("mkd-name-longer-than-fifteen", [&] {
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof(name));
    seen = name;
  });
  ASSERT_TRUE(t.Join().ok());
  EXPECT_EQ(seen, "mkd-name-longer");  // The OS keeps 15 characters.
  EXPECT_EQ(t.name(), "mkd-name-longer-than-fifteen");
}

TEST(ThreadTest, DestroyingJoinsAndMoveAssignJoinsTheOldThread) {
  std::atomic<int> done{0};
  {
    Thread t("mkd-test", [&] { done += 1; });
    t = Thread("mkd-test", [&] { done += 10; });
    EXPECT_EQ(done.load() % 10, 1);  // The first was joined by the assignment.
  }
  EXPECT_EQ(done, 11);  // The second by the destructor.
  Thread empty;
  EXPECT_FALSE(empty.joinable());
  EXPECT_TRUE(empty.Join().ok());
}

}  // namespace
}  // namespace mkd
