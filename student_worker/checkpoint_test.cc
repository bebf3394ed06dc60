#include "student_worker/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/file_util.h"

namespace mkd::student {
namespace {

namespace fs = std::filesystem;

SafetensorsFile OneTensor(char fill) {
  SafetensorsFile f;
  HostArray a;
  a.dtype = DType::kU8;
  a.shape = {4};
  a.data = std::string(4, fill);
  f.tensors["x"] = a;
  return f;
}

TEST(CheckpointTest, WritesAtomicallyAndKeepsTheNewestN) {
  std::string dir = ::testing::TempDir() + "/ckpt_keep";
  fs::remove_all(dir);
  auto none = LatestCheckpoint(dir);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  for (int64_t step : {10, 20, 30}) {
    ASSERT_TRUE(WriteCheckpoint(dir, step, OneTensor('m'), OneTensor('s'), /*keep=*/2).ok());
  }
  auto latest = LatestCheckpoint(dir);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(**latest, 30);
  EXPECT_FALSE(fs::exists(CheckpointFor(dir, 10).model));
  EXPECT_FALSE(fs::exists(CheckpointFor(dir, 10).state));
  EXPECT_TRUE(fs::exists(CheckpointFor(dir, 20).state));
  EXPECT_TRUE(fs::exists(CheckpointFor(dir, 30).model));
  auto back = ReadSafetensors(CheckpointFor(dir, 30).state);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->tensors.at("x").data, "ssss");
  // No temp files are left behind.
  for (const auto& e : fs::directory_iterator(dir + "/checkpoints")) {
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  }
}

TEST(CheckpointTest, DamagedPointerIsAnError) {
  std::string dir = ::testing::TempDir() + "/ckpt_bad";
  fs::remove_all(dir);
  ASSERT_TRUE(WriteCheckpoint(dir, 5, OneTensor('m'), OneTensor('s'), 1).ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/checkpoints/latest", "five\n").ok());
  auto bad = LatestCheckpoint(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("does not hold a step number"),
            std::string::npos);
  ASSERT_TRUE(WriteFileAtomic(dir + "/checkpoints/latest", "6\n").ok());
  bad = LatestCheckpoint(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("names step 6 but its files are missing"),
            std::string::npos);
}

}  // namespace
}  // namespace mkd::student
