// Device helpers on the CPU (what CI can run): device names, precision,
// autocast, seeded generators, pass-through copies. The CUDA side of the
// same code is exercised by tests/cuda_test.cc on a GPU machine.
#include "common/device.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <optional>

#include "common/dtype.h"
#include "common/host_to_device.h"
#include "common/tensor_util.h"

namespace mkd {
namespace {

TEST(DeviceTest, ResolvesNamesAndRefusesBadOnes) {
  auto cpu = ResolveDevice("cpu", "run.device");
  ASSERT_TRUE(cpu.ok());
  EXPECT_TRUE(cpu->is_cpu());
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""}) {
    auto d = ResolveDevice(bad, "run.device");
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(d.status().message().find("run.device: expected cpu, cuda or cuda:N"),
              std::string::npos)
        << d.status();
  }
  if (!CudaAvailable()) {
    auto d = ResolveDevice("cuda:0", "run.device");
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(d.status().message().find("no CUDA device"), std::string::npos) << d.status();
  }
}

// A precision is one of the float types (common/dtype.h), the same enum the
// wire dtype and the teacher's compute dtype use.
TEST(DeviceTest, APrecisionIsAFloatType) {
  EXPECT_EQ(*ParseFloatTypeName("bf16"), DType::kBF16);
  EXPECT_EQ(TorchDtype(*ParseFloatTypeName("fp16")), torch::kFloat16);
  EXPECT_EQ(FloatTypeName(DType::kF32), "fp32");
  auto bad = ParseFloatTypeName("fp8");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("must be fp32, bf16 or fp16"), std::string::npos);
}

// Micro-batches inside one CastCacheScope share the weights' cast, and
// backpropagating each one separately through the shared cast still gives
// every gradient: the same as casting afresh for each.
TEST(DeviceTest, CastCacheScopeSharesCastsAcrossMicroBatches) {
  torch::manual_seed(0);
  torch::nn::Linear layer(8, 4);
  torch::Tensor x = torch::randn({6, 8});
  auto grads = [&](bool scoped) {
    layer->zero_grad();
    std::optional<CastCacheScope> scope;
    if (scoped) scope.emplace(DType::kBF16);
    for (int i = 0; i < 3; ++i) {
      torch::Tensor y;
      {
        AutocastGuard bf16(torch::kCPU, DType::kBF16);
        y = layer(x.narrow(0, 2 * i, 2));
        EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
      }
      y.to(torch::kFloat32).pow(2).sum().backward();  // Each micro-batch on its own.
    }
    return std::make_pair(layer->weight.grad().clone(), layer->bias.grad().clone());
  };
  auto [w_each, b_each] = grads(false);
  auto [w_once, b_once] = grads(true);
  EXPECT_TRUE(torch::equal(w_each, w_once));
  EXPECT_TRUE(torch::equal(b_each, b_once));
  EXPECT_GT(w_once.abs().sum().item<float>(), 0);
}

TEST(DeviceTest, AutocastGuardCastsMatmulsAndRestores) {
  torch::Tensor a = torch::randn({4, 4}), b = torch::randn({4, 4});
  {
    AutocastGuard on(torch::kCPU, DType::kBF16);
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    {
      AutocastGuard fp32(torch::kCPU, DType::kF32);  // A no-op inside.
      EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    }
  }
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat32) << "autocast left on";
}

TEST(DeviceTest, GeneratorsAreSeededAndLeaveTheGlobalOneAlone) {
  torch::manual_seed(1);
  torch::Tensor expected_global = torch::rand({3});
  torch::manual_seed(1);
  at::Generator g1 = MakeGenerator(torch::kCPU, 42), g2 = MakeGenerator(torch::kCPU, 42);
  torch::Tensor x1 = torch::rand({5}, g1), x2 = torch::rand({5}, g2);
  EXPECT_TRUE(torch::equal(x1, x2));
  EXPECT_FALSE(torch::equal(x1, torch::rand({5}, MakeGenerator(torch::kCPU, 43))));
  EXPECT_TRUE(torch::equal(torch::rand({3}), expected_global));

  torch::Tensor state = GetDefaultRngState(torch::kCPU);
  torch::Tensor first = torch::rand({2});
  SetDefaultRngState(torch::kCPU, state);
  EXPECT_TRUE(torch::equal(torch::rand({2}), first));
}

TEST(DeviceTest, CpuCopiesPassThroughAndNoMemoryIsReported) {
  HostToDevice h2d(torch::kCPU);
  torch::Tensor x = torch::arange(6);
  HostToDevice::Transfer t = h2d.Start({x});
  EXPECT_EQ(t.done, nullptr);
  std::vector<torch::Tensor> out = h2d.Finish(std::move(t));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].data_ptr(), x.data_ptr()) << "a CPU 'copy' should not copy";
  EXPECT_FALSE(h2d.PinnedEmpty({2, 3}, torch::kFloat16).is_pinned());
  EXPECT_FALSE(PeakDeviceMemory(torch::kCPU).has_value());
  SynchronizeDevice(torch::kCPU);  // A no-op, and no crash.
}

}  // namespace
}  // namespace mkd
