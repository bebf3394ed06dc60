// CatchTorch's mapping of LibTorch exceptions to status codes.
#include "common/tensor_util.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>
#include <string>

namespace mkd {
namespace {

TEST(CatchTorchTest, ArgumentErrorsAreInvalidArgumentOthersInternal) {
  // TORCH_CHECK_INDEX: an index past the end.
  absl::Status st = CatchTorch("selecting", [] { torch::ones({2}).select(0, 5); });
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(std::string(st.message()).rfind("selecting: ", 0), 0u) << st;
  EXPECT_EQ(std::string(st.message()).find('\n'), std::string::npos) << "no backtrace";
  st = CatchTorch("parsing", [] { throw std::invalid_argument("bad"); });
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  // A plain failed check stays internal: it is untyped in LibTorch.
  st = CatchTorch("checking", [] { TORCH_CHECK(false, "broken invariant"); });
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << st;
  st = CatchTorch("allocating", [] { throw std::bad_alloc(); });
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(CatchTorch("nothing", [] {}).ok());
}

}  // namespace
}  // namespace mkd
