#include "common/safetensors.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "common/file_util.h"

namespace mkd {
namespace {

// A raw file from header text and data bytes.
std::string Raw(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

void ExpectInvalid(const std::string& bytes, const std::string& fragment) {
  auto file = ParseSafetensors(bytes);
  ASSERT_FALSE(file.ok()) << "expected an error containing '" << fragment << "'";
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(file.status().message()).find(fragment), std::string::npos)
      << file.status();
}

TEST(SafetensorsTest, RoundTripsEveryDtypeAndMetadata) {
  SafetensorsFile file;
  file.metadata["format"] = "pt";
  file.metadata["note"] = "hello";
  const DType all[] = {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64,
                       DType::kI32, DType::kI16, DType::kI8,  DType::kU8,   DType::kBool};
  int i = 0;
  for (DType dtype : all) {
    HostArray a;
    a.dtype = dtype;
    a.shape = {2, i + 1};
    a.data.resize(DTypeSize(dtype) * 2 * (i + 1));
    for (size_t j = 0; j < a.data.size(); ++j) a.data[j] = static_cast<char>(j * 7 + i);
    file.tensors[std::string("t_") + std::string(DTypeName(dtype))] = a;
    ++i;
  }
  HostArray scalar;  // A 0-d tensor and an empty one are legal too.
  scalar.shape = {};
  scalar.data = std::string(4, '\1');
  file.tensors["scalar"] = scalar;
  HostArray empty;
  empty.shape = {0, 3};
  file.tensors["empty"] = empty;

  auto bytes = SerializeSafetensors(file);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  uint64_t header_len = 0;
  for (int b = 7; b >= 0; --b)
    header_len = (header_len << 8) | static_cast<unsigned char>((*bytes)[b]);
  EXPECT_EQ((8 + header_len) % 8, 0u) << "data buffer should be 8-byte aligned";

  auto back = ParseSafetensors(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->metadata, file.metadata);
  ASSERT_EQ(back->tensors.size(), file.tensors.size());
  for (const auto& [name, a] : file.tensors) {
    const HostArray& b = back->tensors.at(name);
    EXPECT_EQ(b.dtype, a.dtype) << name;
    EXPECT_EQ(b.shape, a.shape) << name;
    EXPECT_EQ(b.data, a.data) << name;
  }
}

TEST(SafetensorsTest, ReadsFileWrittenByPython) {
  auto file = ReadSafetensors("tests/golden/deit.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata.at("format"), "pt");
  const HostArray& pos = file->tensors.at("pos_embed");
  EXPECT_EQ(pos.dtype, DType::kF32);
  EXPECT_EQ(pos.shape, (std::vector<int64_t>{1, 17, 48}));
}

TEST(SafetensorsTest, AcceptsEntriesInAnyHeaderOrder) {
  std::string h = R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
                  R"("a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  auto file = ParseSafetensors(Raw(h, "ABCD"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->tensors.at("a").data, "AB");
  EXPECT_EQ(file->tensors.at("b").data, "CD");
}

TEST(SafetensorsTest, RejectsStructuralErrors) {
  const std::string ok_entry = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ExpectInvalid("abc", "shorter than the 8-byte");
  ExpectInvalid(Raw(ok_entry, "12345678").substr(0, 20), "runs past the end");
  std::string huge = Raw(ok_entry, "12345678");
  huge[5] = 0x7f;  // Header length ~ 2^47.
  ExpectInvalid(huge, "exceeds the limit");
  ExpectInvalid(Raw("[1, 2]", ""), "does not start with '{'");
  ExpectInvalid(Raw("{not json", ""), "not valid JSON");
  ExpectInvalid(Raw(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", "12345678"),
                "unsupported dtype 'F33'");
  ExpectInvalid(Raw(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "12345678"),
                "'a' spans 8 bytes but F32 [3] needs 12");
  ExpectInvalid(Raw(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "12345678"),
                "not a non-negative integer");
  ExpectInvalid(Raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", "12345678"),
                "unknown field 'x'");
  ExpectInvalid(Raw(R"({"a":{"dtype":"F32","shape":[2]}})", "12345678"), "data_offsets");
  ExpectInvalid(Raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", "12345678"),
                "end < begin");
  ExpectInvalid(Raw(ok_entry, "1234"), "past the 4-byte data buffer");
  ExpectInvalid(Raw(ok_entry, "1234567890"), "2 trailing bytes");
  ExpectInvalid(Raw(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", "1234"),
                "leaves a hole");
  ExpectInvalid(Raw(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                    R"("b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
                    "123"),
                "overlaps");
  ExpectInvalid(Raw(R"({"__metadata__":{"k":1}})", ""), "is not a string");
}

TEST(SafetensorsTest, SerializeRejectsBadArrays) {
  SafetensorsFile file;
  HostArray a;
  a.shape = {3};
  a.data = "1234";  // 4 bytes, F32 [3] needs 12.
  file.tensors["w"] = a;
  auto bytes = SerializeSafetensors(file);
  ASSERT_FALSE(bytes.ok());
  EXPECT_NE(std::string(bytes.status().message()).find("'w'"), std::string::npos);
}

TEST(SafetensorsTest, FileRoundTripAndMissingFile) {
  std::string path = ::testing::TempDir() + "/rt.safetensors";
  SafetensorsFile file;
  HostArray a;
  a.dtype = DType::kI64;
  a.shape = {1};
  a.data = std::string(8, '\x05');
  file.tensors["x"] = a;
  ASSERT_TRUE(WriteSafetensors(path, file).ok());
  auto back = ReadSafetensors(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tensors.at("x").data, a.data);

  auto missing = ReadSafetensors(::testing::TempDir() + "/nope.safetensors");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(missing.status().message()).find("nope.safetensors"), std::string::npos);

  // A truncated file on disk names the path.
  auto bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  ASSERT_TRUE(WriteFileAtomic(path, bytes->substr(0, bytes->size() - 3)).ok());
  auto truncated = ReadSafetensors(path);
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(std::string(truncated.status().message()).find(path), std::string::npos);
}

}  // namespace
}  // namespace mkd
