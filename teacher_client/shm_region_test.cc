// ShmRegion (a real POSIX shared-memory object) and RangeAllocator.
#include "teacher_client/shm_region.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <random>

#include "proto/shared_memory.h"

namespace mkd::client {
namespace {

TEST(ShmRegionTest, OwnerOnlyAllocatedAndGoneAfterwards) {
  std::string path;
  {
    auto region = ShmRegion::Create(1 << 20);
    ASSERT_TRUE(region.ok()) << region.status();
    EXPECT_TRUE(ValidateShmRegionName((*region)->name()).ok()) << (*region)->name();
    path = "/dev/shm" + (*region)->name();
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(st.st_size, 1 << 20);
    EXPECT_GE(st.st_blocks * 512, 1 << 20) << "allocated in full, not sparse";
    (*region)->data()[(1 << 20) - 1] = 7;  // Mapped and writable to its end.
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(ShmRegionTest, UnlinkLeavesTheMappingUsable) {
  auto region = ShmRegion::Create(4096);
  ASSERT_TRUE(region.ok());
  (*region)->Unlink();
  EXPECT_FALSE(std::filesystem::exists("/dev/shm" + (*region)->name()));
  (*region)->data()[0] = 1;
  EXPECT_EQ((*region)->data()[0], 1);
}

TEST(RangeAllocatorTest, FirstFitAlignedAndMergesFreedNeighbours) {
  RangeAllocator a(1024, 64);
  auto x = a.Allocate(100);  // Rounded up to 128.
  auto y = a.Allocate(64);
  auto z = a.Allocate(1);
  ASSERT_TRUE(x && y && z);
  EXPECT_EQ(*x, 0);
  EXPECT_EQ(*y, 128);
  EXPECT_EQ(*z, 192);
  EXPECT_EQ(a.free_bytes(), 1024 - 256);
  EXPECT_FALSE(a.Allocate(1024 - 256 + 1));
  a.Free(*y);
  EXPECT_EQ(a.Allocate(64), 128) << "the freed hole is reused first";
  a.Free(128);
  a.Free(*x);
  a.Free(*z);  // Merges with both neighbours: the whole range is one block again.
  EXPECT_EQ(a.free_bytes(), 1024);
  EXPECT_EQ(a.Allocate(1024), 0);
  EXPECT_FALSE(a.Allocate(0));
}

TEST(RangeAllocatorTest, RandomAllocateFreeKeepsRangesDisjoint) {
  std::mt19937 rng(7);
  RangeAllocator a(1 << 16, 64);
  std::map<int64_t, int64_t> live;  // Offset -> bytes.
  for (int i = 0; i < 5000; ++i) {
    if (!live.empty() && rng() % 2) {
      auto it = std::next(live.begin(), rng() % live.size());
      a.Free(it->first);
      live.erase(it);
      continue;
    }
    const int64_t bytes = 1 + rng() % 4000;
    auto at = a.Allocate(bytes);
    if (!at) continue;
    auto next = live.lower_bound(*at);
    if (next != live.end()) EXPECT_LE(*at + bytes, next->first);
    if (next != live.begin()) {
      auto prev = std::prev(next);
      EXPECT_LE(prev->first + prev->second, *at);
    }
    EXPECT_EQ(*at % 64, 0);
    EXPECT_LE(*at + bytes, 1 << 16);
    live[*at] = bytes;
  }
  for (auto& [offset, bytes] : live) a.Free(offset);
  EXPECT_EQ(a.free_bytes(), 1 << 16);
}

}  // namespace
}  // namespace mkd::client
