#include "proto/tensor_codec.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/tensor_util.h"
#include "proto/wire.h"

namespace mkd::proto {
namespace {

TEST(TensorCodec, RoundTripsEachDtype) {
  torch::manual_seed(0);
  torch::Tensor t = torch::randn({2, 3, 5});
  for (auto [dtype, tol] :
       {std::pair{maskedkd::v1::DTYPE_F32, 0.0}, std::pair{maskedkd::v1::DTYPE_F16, 2e-3},
        std::pair{maskedkd::v1::DTYPE_BF16, 2e-2}}) {
    std::string bytes = EncodeFloats(t, dtype);
    EXPECT_EQ(bytes.size(), 30u * WireDTypeSize(dtype));
    auto back = DecodeFloats(bytes, dtype, {2, 3, 5}, "payload");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->dtype(), torch::kFloat32);
    EXPECT_LE((*back - t).abs().max().item<double>(), tol * 4) << WireDTypeName(dtype);
  }
}

TEST(TensorCodec, RejectsWrongSizesAndDtypes) {
  std::string bytes(10, '\0');
  auto r = DecodeFloats(bytes, maskedkd::v1::DTYPE_F32, {2, 2}, "payload");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("payload: 10 bytes"), std::string::npos) << r.status();
  r = DecodeFloats(bytes, 0, {5}, "payload");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unspecified"), std::string::npos) << r.status();
  EXPECT_FALSE(DecodeIndices(bytes, 1, 3).ok());
}

TEST(TensorCodec, IndicesRoundTripAsInt32) {
  torch::Tensor idx = torch::tensor({{3, 1, 4}, {0, 15, 9}}, torch::kInt64);
  std::string bytes = EncodeIndices(idx);
  ASSERT_EQ(bytes.size(), 24u);
  auto back = DecodeIndices(bytes, 2, 3);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(torch::equal(*back, idx));
}

TEST(TensorCodec, WireDtypesRoundTripThroughTheOneFloatTypeEnum) {
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16}) {
    EXPECT_EQ(FromWireDType(WireDType(d)), d) << FloatTypeName(d);
    EXPECT_EQ(WireDTypeName(WireDType(d)), FloatTypeName(d));
    EXPECT_EQ(WireDTypeSize(WireDType(d)), static_cast<int64_t>(DTypeSize(d)));
    EXPECT_EQ(WireTorchDtype(WireDType(d)), TorchDtype(d));
  }
  EXPECT_EQ(FromWireDType(maskedkd::v1::DTYPE_UNSPECIFIED), std::nullopt);
  EXPECT_EQ(WireDTypeSize(maskedkd::v1::DTYPE_UNSPECIFIED), 0);
  EXPECT_EQ(WireDTypeName(99), "unspecified (99)");
}

}  // namespace
}  // namespace mkd::proto
