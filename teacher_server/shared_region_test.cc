// SharedRegion: the teacher's checks on a student's shared-memory region,
// with real POSIX shared-memory objects.
#include "teacher_server/shared_region.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "proto/shared_memory.h"

namespace mkd::teacher {
namespace {

// A fresh region name; the object is made with `mode` and `bytes`.
std::string MakeObject(int64_t bytes, mode_t mode = 0600) {
  static std::mt19937_64 rng(12345);
  const std::string name = absl::StrCat(kShmRegionPrefix, "test-", getpid(), "-", rng() % 1000000);
  const int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, mode);
  EXPECT_GE(fd, 0) << std::strerror(errno);
  fchmod(fd, mode);
  EXPECT_EQ(ftruncate(fd, bytes), 0);
  close(fd);
  return name;
}

bool InDevShm(const std::string& name) { return std::filesystem::exists("/dev/shm" + name); }

maskedkd::v1::SharedMemoryRange Range(const std::string& region, uint64_t offset, uint64_t size) {
  maskedkd::v1::SharedMemoryRange r;
  r.set_region(region);
  r.set_offset(offset);
  r.set_size(size);
  return r;
}

TEST(SharedRegionTest, OpensUnlinksAndMovesBytesBothWays) {
  const std::string name = MakeObject(4096);
  ASSERT_TRUE(InDevShm(name));
  auto region = SharedRegion::Open(name, 4096, 1 << 20);
  ASSERT_TRUE(region.ok()) << region.status();
  EXPECT_FALSE(InDevShm(name)) << "the teacher unlinks the name as soon as it has the region";
  const char in[] = "kept patches";
  ASSERT_TRUE((*region)->Write(100, in, sizeof(in)).ok());
  char out[sizeof(in)] = {};
  ASSERT_TRUE((*region)->Read(100, sizeof(in), out).ok());
  EXPECT_STREQ(out, in);
}

TEST(SharedRegionTest, RefusesBadNamesSizesModesAndMissingObjects) {
  EXPECT_EQ(SharedRegion::Open("/other-name", 4096, 1 << 20).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SharedRegion::Open("/mkd-../../etc/passwd", 4096, 1 << 20).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SharedRegion::Open(absl::StrCat(kShmRegionPrefix, "nobody-made-this"), 4096, 1 << 20)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  const std::string big = MakeObject(4096);
  auto over = SharedRegion::Open(big, 4096, 1024);  // Over the teacher's limit.
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(over.status().message().find("1 to 1024"), std::string::npos) << over.status();
  shm_unlink(big.c_str());
  const std::string shared = MakeObject(4096, 0644);
  auto open_to_others = SharedRegion::Open(shared, 4096, 1 << 20);
  EXPECT_EQ(open_to_others.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(open_to_others.status().message().find("0600"), std::string::npos);
  EXPECT_FALSE(InDevShm(shared)) << "a refused region is unlinked too";
  const std::string lied = MakeObject(4096);
  auto wrong_size = SharedRegion::Open(lied, 8192, 1 << 20);
  EXPECT_EQ(wrong_size.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_size.status().message().find("8192 announced"), std::string::npos);
}

TEST(SharedRegionTest, RangesMustNameThisRegionAndFitInIt) {
  const std::string name = MakeObject(4096);
  auto region = SharedRegion::Open(name, 4096, 1 << 20);
  ASSERT_TRUE(region.ok());
  const SharedRegion& r = **region;
  EXPECT_TRUE(r.CheckRange(Range(name, 0, 4096), 4096, "payload_shm").ok());
  EXPECT_TRUE(r.CheckRange(Range(name, 4000, 96), 96, "payload_shm").ok());
  auto expect_refused = [&](const maskedkd::v1::SharedMemoryRange& range, int64_t want,
                            const std::string& says) {
    absl::Status st = r.CheckRange(range, want, "payload_shm");
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << says;
    EXPECT_NE(st.message().find(says), std::string::npos) << st;
  };
  expect_refused(Range(absl::StrCat(kShmRegionPrefix, "another"), 0, 16), 16, "region");
  expect_refused(Range(name, 0, 16), 32, "the shapes need 32");
  expect_refused(Range(name, 4090, 16), 16, "outside the region");
  // Offsets that wrap around 2^64 when added are refused, not wrapped.
  expect_refused(Range(name, ~uint64_t{0} - 7, 16), 16, "outside the region");
}

TEST(SharedRegionTest, AShrunkRegionIsAnErrorNotACrash) {
  const std::string name = MakeObject(4096);
  const int fd = shm_open(name.c_str(), O_RDWR, 0);  // The "student" keeps a descriptor.
  ASSERT_GE(fd, 0);
  auto region = SharedRegion::Open(name, 4096, 1 << 20);
  ASSERT_TRUE(region.ok());
  ASSERT_EQ(ftruncate(fd, 1024), 0);  // Shrunk under the teacher.
  char buf[512];
  EXPECT_EQ((*region)->Read(2048, sizeof(buf), buf).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*region)->Write(2048, buf, sizeof(buf)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*region)->Read(0, sizeof(buf), buf).ok());
  close(fd);
}

// The size check and the read are two steps: a student that shrinks its
// region between them makes the read fault. The mapping's guard turns that
// into zeros and an error for the region, never a SIGBUS for the teacher.
TEST(SharedRegionTest, AShrinkRacingAReadIsCaughtByTheGuard) {
  const std::string name = MakeObject(8192);
  const int fd = shm_open(name.c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  auto region = SharedRegion::Open(name, 8192, 1 << 20);
  ASSERT_TRUE(region.ok());
  std::memset((*region)->mapped(), 7, 8192);
  auto view = (*region)->View(4096, 4096);  // Checked while the region is whole.
  ASSERT_TRUE(view.ok());
  ASSERT_TRUE((*region)->Intact().ok());
  ASSERT_EQ(ftruncate(fd, 4096), 0);  // Then shrunk, before the read.
  volatile const char* bytes = *view;
  EXPECT_EQ(bytes[100], 0);  // Faulted, and read a zero page instead.
  absl::Status intact = (*region)->Intact();
  EXPECT_EQ(intact.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(intact.message().find("did it shrink"), std::string::npos) << intact.message();
  // The mapping holds zeros now, not the region: nothing more is read
  // from it, even ranges the region still holds.
  char buf[16];
  EXPECT_EQ((*region)->Read(0, sizeof(buf), buf).code(), absl::StatusCode::kInvalidArgument);
  close(fd);
}

// The guard covers its own mappings only: a SIGBUS anywhere else still
// ends the process, as it would without the guard.
TEST(GuardedMappingDeathTest, FaultsOutsideGuardedMappingsStillKill) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string name = MakeObject(8192);
  const int fd = shm_open(name.c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  shm_unlink(name.c_str());
  auto guarded = GuardedMapping::Map(fd, 8192);  // Installs the handler.
  ASSERT_TRUE(guarded.ok());
  EXPECT_DEATH(
      {
        auto* plain = static_cast<volatile char*>(
            mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
        if (ftruncate(fd, 0) == 0) std::printf("%d\n", plain[4096]);
      },
      "");
  EXPECT_FALSE((*guarded)->broken());
  close(fd);
}

}  // namespace
}  // namespace mkd::teacher
