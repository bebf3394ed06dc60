#include "common/npy.h"

#include <gtest/gtest.h>

#include <string>

namespace mkd {
namespace {

std::string Npy(int version, const std::string& dict, const std::string& data) {
  std::string out = "\x93NUMPY";
  out.push_back(static_cast<char>(version));
  out.push_back(0);
  size_t len = dict.size();
  int len_bytes = version == 1 ? 2 : 4;
  for (int i = 0; i < len_bytes; ++i) out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  return out + dict + data;
}

void ExpectInvalid(const std::string& bytes, const std::string& fragment) {
  auto array = ParseNpy(bytes);
  ASSERT_FALSE(array.ok()) << "expected an error containing '" << fragment << "'";
  EXPECT_EQ(array.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(array.status().message()).find(fragment), std::string::npos)
      << array.status();
}

TEST(NpyTest, ReadsNumpyWrittenFiles) {
  auto images = ReadNpy("tests/golden/images.npy");
  ASSERT_TRUE(images.ok()) << images.status();
  EXPECT_EQ(images->dtype, DType::kF32);
  EXPECT_EQ(images->shape, (std::vector<int64_t>{4, 3, 32, 32}));
  auto idx = ReadNpy("tests/golden/kept_idx.npy");
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_EQ(idx->dtype, DType::kI64);
  EXPECT_EQ(idx->shape, (std::vector<int64_t>{4, 7}));
}

TEST(NpyTest, ParsesVersionTwoAndOneDimensionalShapes) {
  auto a = ParseNpy(
      Npy(2, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }\n", std::string(8, '\0')));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2}));
  auto scalar = ParseNpy(Npy(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (), }\n", "x"));
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  EXPECT_TRUE(scalar->shape.empty());
}

TEST(NpyTest, RoundTrips) {
  HostArray a;
  a.dtype = DType::kF16;
  a.shape = {3, 1, 2};
  a.data = "abcdefghijkl";
  auto bytes = SerializeNpy(a);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ((bytes->size() - a.data.size()) % 64, 0u) << "header should be 64-byte aligned";
  auto back = ParseNpy(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->dtype, a.dtype);
  EXPECT_EQ(back->shape, a.shape);
  EXPECT_EQ(back->data, a.data);

  HostArray bf16;
  bf16.dtype = DType::kBF16;
  bf16.shape = {1};
  bf16.data = "ab";
  EXPECT_FALSE(SerializeNpy(bf16).ok()) << "NumPy has no bfloat16";
}

TEST(NpyTest, RejectsMalformedFiles) {
  const std::string f4 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n";
  ExpectInvalid("hello world", "magic");
  ExpectInvalid(Npy(9, f4, std::string(16, '\0')), "unsupported format version 9");
  ExpectInvalid(Npy(1, f4, std::string(12, '\0')),
                "data is 12 bytes but shape [2, 2] needs 16 (truncated?)");
  ExpectInvalid(Npy(1, f4, std::string(20, '\0')), "data is 20 bytes");
  ExpectInvalid(Npy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", "1234"),
                "big-endian");
  ExpectInvalid(Npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", "1234"),
                "Fortran-order");
  ExpectInvalid(Npy(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", "12345678"),
                "unsupported dtype descr '<c8'");
  ExpectInvalid(Npy(1, "{'descr': '<f4', 'fortran_order': False}", "1234"), "lacks 'shape'");
  ExpectInvalid(Npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", ""),
                "bad shape entry");
  ExpectInvalid(Npy(1, "not a dict", ""), "not a dict");
  std::string cut = Npy(1, f4, std::string(16, '\0')).substr(0, 30);
  ExpectInvalid(cut, "header runs past the end");
}

TEST(NpyTest, ReadNpyNamesThePath) {
  auto missing = ReadNpy("/nonexistent/x.npy");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(missing.status().message()).find("/nonexistent/x.npy"), std::string::npos);
}

}  // namespace
}  // namespace mkd
