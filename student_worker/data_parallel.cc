#include "student_worker/data_parallel.h"

// c10d's backend headers are compiled in only where their macro is set;
// Debian's LibTorch exports ProcessGroupGloo and TCPStore (with libgloo).
// MKD_HAVE_GLOO: CMake found Gloo's headers (libgloo-dev, or the LibTorch's).
// clang-format off
#include <torch/version.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef MKD_HAVE_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef MKD_TORCH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
// clang-format on

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/mutex.h"

namespace mkd::student {
namespace {

// LibTorch 2.x split the process group's collectives into a Backend.
#if TORCH_VERSION_MAJOR >= 2
using Collectives = c10d::Backend;
#else
using Collectives = c10d::ProcessGroup;
#endif

std::chrono::milliseconds Millis(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

#ifdef MKD_HAVE_GLOO
// The local address Gloo binds this rank's connections to: the interface
// $GLOO_SOCKET_IFNAME names (as PyTorch reads it); the loopback when the
// master is on it (every rank on this machine); else the address this
// machine's hostname resolves to (a pod's IP), loopback if it resolves to
// none. Never MASTER_ADDR itself: on other ranks that is not a local address.
std::shared_ptr<::gloo::transport::Device> GlooDevice(const std::string& master_addr) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  if (master_addr == "localhost" || master_addr.rfind("127.", 0) == 0 || master_addr == "::1") {
    return c10d::ProcessGroupGloo::createDeviceForHostname(master_addr);
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}
#endif

}  // namespace

struct DataParallel::Impl {
  DataParallelOptions options;
  std::string backend;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Collectives> group;

  // A bucket: a flat buffer for some parameters' gradients.
  struct Bucket {
    std::vector<size_t> params;   // Indices into `params`.
    std::vector<int64_t> offset;  // Of each in `flat`.
    torch::Tensor flat;
    size_t ready = 0;  // Gradients copied in during this backward.
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<torch::Tensor> params;
  std::vector<std::pair<size_t, size_t>> slot;  // Param -> (bucket, position in it).
  std::vector<unsigned> hook_ids;
  std::vector<Bucket> buckets;
  // Hooks may run on autograd's threads. The buckets' `ready` counts and
  // `work` are written under it too; AverageGradients reads the buckets
  // without it once the hooks are disarmed (armed false: they touch
  // nothing more).
  Mutex mu;
  std::vector<bool> filled ABSL_GUARDED_BY(mu);  // Param: its gradient is in its bucket.
  bool armed ABSL_GUARDED_BY(mu) = false;
  size_t next_launch ABSL_GUARDED_BY(mu) = 0;    // Buckets start strictly in this order.
  size_t started_early ABSL_GUARDED_BY(mu) = 0;  // By hooks, as the last AverageGradients found.
  std::string hook_error ABSL_GUARDED_BY(mu);    // A collective that failed to start in a hook.

  absl::Status Failed(const std::string& what, const std::exception& e) const {
    return absl::AbortedError(absl::StrCat(
        "data parallel (rank ", options.rank, " of ", options.world_size, ", ", backend,
        "): ", what, " failed: ", e.what(),
        ". A peer rank exited or did not answer within dist.timeout_s (",
        absl::ToInt64Seconds(options.timeout),
        " s); the job stops. Start every rank again with --resume to continue from the last "
        "checkpoint"));
  }

  void Launch(Bucket& b) {
    std::vector<torch::Tensor> t = {b.flat};
    b.work = group->allreduce(t);
  }

  // Starts every full bucket whose predecessors started.
  void LaunchReady() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    while (next_launch < buckets.size() &&
           buckets[next_launch].ready == buckets[next_launch].params.size()) {
      Launch(buckets[next_launch++]);
    }
  }

  // Writes grad (+ `more`, if defined) into parameter i's bucket slot: one
  // pass, no temporary.
  void CopyIn(size_t i, const torch::Tensor& grad, const torch::Tensor& more = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const auto [bi, pos] = slot[i];
    Bucket& b = buckets[bi];
    const int64_t n = params[i].numel();
    torch::Tensor dst = b.flat.narrow(0, b.offset[pos], n);
    if (grad.defined() && more.defined()) {
      torch::add_out(dst, grad.reshape({-1}), more.reshape({-1}));
    } else if (grad.defined() || more.defined()) {
      dst.copy_((grad.defined() ? grad : more).reshape({-1}));
    } else {
      dst.zero_();  // A parameter this step did not reach: it adds nothing.
    }
    filled[i] = true;
    ++b.ready;
  }

  void OnGrad(size_t i, const torch::Tensor& incoming) {
    MutexLock lock(&mu);
    if (!armed || filled[i]) return;
    // The hook sees this backward's contribution before it is accumulated:
    // the step's gradient is what earlier micro-batches left plus it.
    try {  // Nothing may escape into autograd's engine from here.
      CopyIn(i, params[i].grad(), incoming);
      LaunchReady();
    } catch (const std::exception& e) {
      hook_error = e.what();  // Reported by AverageGradients, on the caller's thread.
      armed = false;
    }
  }
};

DataParallel::DataParallel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DataParallel::~DataParallel() {
  for (size_t i = 0; i < impl_->hook_ids.size(); ++i) {
    try {
      impl_->params[i].remove_hook(impl_->hook_ids[i]);
    } catch (const std::exception&) {  // A destructor throws nothing.
    }
  }
}

absl::StatusOr<std::unique_ptr<DataParallel>> DataParallel::Connect(const DataParallelOptions& o) {
  auto impl = std::make_unique<Impl>();
  impl->options = o;
  std::string backend = o.backend;
  if (backend == "auto") backend = o.device.is_cuda() ? "nccl" : "gloo";
#ifndef MKD_TORCH_NCCL
  if (backend == "nccl" && o.backend == "auto") backend = "gloo";  // A CUDA LibTorch without NCCL.
#endif
  if (backend == "nccl" && !o.device.is_cuda()) {
    return absl::InvalidArgumentError(
        "config key 'dist.backend': nccl needs run.device cuda (use gloo on the CPU)");
  }
  impl->backend = backend;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(o.master_port);
    so.isServer = o.rank == 0;
    so.numWorkers = o.world_size;
    so.waitWorkers = true;
    so.timeout = Millis(o.timeout);
    impl->store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "data parallel (rank ", o.rank, " of ", o.world_size, "): rendezvous at ", o.master_addr,
        ":", o.master_port, " failed: ", e.what(),
        " (every rank must start within dist.timeout_s, and rank 0 must be able to listen on "
        "MASTER_PORT)"));
  }
  try {
    if (backend == "gloo") {
#ifdef MKD_HAVE_GLOO
      auto go = c10d::ProcessGroupGloo::Options::create();
      go->timeout = Millis(o.timeout);
      go->devices.push_back(GlooDevice(o.master_addr));
      impl->group =
          c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, o.rank, o.world_size, go);
#else
      return absl::InvalidArgumentError(
          "config key 'dist.backend': this build has no Gloo (install libgloo-dev and rebuild)");
#endif
    } else {
#ifdef MKD_TORCH_NCCL
      auto no = c10d::ProcessGroupNCCL::Options::create();
      no->timeout = Millis(o.timeout);
      impl->group =
          c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, o.rank, o.world_size, no);
#else
      return absl::InvalidArgumentError(
          "config key 'dist.backend': this build's LibTorch has no NCCL (use gloo)");
#endif
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("data parallel (rank ", o.rank, " of ", o.world_size,
                                               "): starting the ", backend,
                                               " process group failed: ", e.what()));
  }
  return std::unique_ptr<DataParallel>(new DataParallel(std::move(impl)));
}

int DataParallel::rank() const { return impl_->options.rank; }
int DataParallel::world_size() const { return impl_->options.world_size; }
const std::string& DataParallel::backend() const { return impl_->backend; }

absl::Status DataParallel::Broadcast(const std::vector<torch::Tensor>& tensors) {
  try {
    torch::NoGradGuard no_grad;
    // One flat buffer: one collective instead of one per tensor.
    std::vector<torch::Tensor> flat = {torch::cat([&] {
      std::vector<torch::Tensor> v;
      for (const torch::Tensor& t : tensors) v.push_back(t.detach().reshape({-1}));
      return v;
    }())};
    impl_->group->broadcast(flat)->wait();
    int64_t at = 0;
    for (const torch::Tensor& t : tensors) {
      t.detach().copy_(flat[0].narrow(0, at, t.numel()).view_as(t));
      at += t.numel();
    }
  } catch (const std::exception& e) {
    return impl_->Failed("broadcasting rank 0's parameters", e);
  }
  return absl::OkStatus();
}

void DataParallel::Attach(const std::vector<torch::Tensor>& params) {
  Impl& im = *impl_;
  im.params = params;
  im.slot.assign(params.size(), {0, 0});
  {
    MutexLock lock(&im.mu);  // No hook is registered yet; the analysis asks for it all the same.
    im.filled.assign(params.size(), false);
  }
  // Reverse order: the last layers' gradients come first in backward. A
  // bucket is closed (its buffer allocated) once it holds bucket_bytes, or
  // before a parameter of another dtype.
  int64_t used = 0;  // Elements in the open bucket.
  for (size_t r = params.size(); r-- > 0;) {
    const torch::Tensor& p = params[r];
    if (im.buckets.empty() || im.buckets.back().flat.defined()) {
      im.buckets.emplace_back();
      used = 0;
    }
    Impl::Bucket& b = im.buckets.back();
    im.slot[r] = {im.buckets.size() - 1, b.params.size()};
    b.params.push_back(r);
    b.offset.push_back(used);
    used += p.numel();
    if (used * static_cast<int64_t>(p.element_size()) >= im.options.bucket_bytes || r == 0 ||
        params[r - 1].scalar_type() != p.scalar_type()) {
      b.flat = torch::zeros({used}, p.options().requires_grad(false));
    }
  }
  for (size_t i = 0; i < params.size(); ++i) {
    Impl* raw = impl_.get();
    im.hook_ids.push_back(
        im.params[i].register_hook([raw, i](const torch::Tensor& g) { raw->OnGrad(i, g); }));
  }
}

void DataParallel::ArmHooks() {
  Impl& im = *impl_;
  MutexLock lock(&im.mu);
  for (Impl::Bucket& b : im.buckets) {
    b.ready = 0;
    b.work.reset();
  }
  std::fill(im.filled.begin(), im.filled.end(), false);
  im.next_launch = 0;
  im.hook_error.clear();
  im.armed = true;
}

absl::Status DataParallel::AverageGradients() {
  Impl& im = *impl_;
  try {
    torch::NoGradGuard no_grad;
    {
      // Disarmed, the hooks touch nothing more; the lock is not held while
      // waiting on the collectives below.
      MutexLock lock(&im.mu);
      const bool was_armed = im.armed;
      im.armed = false;
      if (!im.hook_error.empty()) {
        return im.Failed("starting a gradient all-reduce", std::runtime_error(im.hook_error));
      }
      if (!was_armed) {
        for (Impl::Bucket& b : im.buckets) b.ready = 0;
        std::fill(im.filled.begin(), im.filled.end(), false);
        im.next_launch = 0;
      }
      im.started_early = im.next_launch;
      // Whatever the hooks did not see (no backward armed, or parameters the
      // backward did not reach) is copied in now, in bucket order.
      for (size_t i = 0; i < im.params.size(); ++i) {
        if (!im.filled[i]) im.CopyIn(i, im.params[i].grad());
      }
      im.LaunchReady();
    }
    const double scale = 1.0 / im.options.world_size;
    for (Impl::Bucket& b : im.buckets) {
      b.work->wait();
      b.work.reset();
      b.flat.mul_(scale);
      for (size_t j = 0; j < b.params.size(); ++j) {
        torch::Tensor& p = im.params[b.params[j]];
        torch::Tensor mean = b.flat.narrow(0, b.offset[j], p.numel()).view_as(p);
        if (p.grad().defined()) {
          p.mutable_grad().copy_(mean);
        } else {
          p.mutable_grad() = mean.clone();
        }
      }
    }
  } catch (const std::exception& e) {
    return im.Failed("all-reducing gradients", e);
  }
  return absl::OkStatus();
}

int DataParallel::buckets() const { return static_cast<int>(impl_->buckets.size()); }

int DataParallel::buckets_started_in_backward() const {
  MutexLock lock(&impl_->mu);
  return static_cast<int>(impl_->started_early);
}

absl::StatusOr<std::vector<double>> DataParallel::SumOverRanks(const std::vector<double>& values,
                                                               const std::string& what) {
  try {
    std::vector<torch::Tensor> t = {
        torch::tensor(values, torch::kFloat64).to(impl_->options.device)};
    impl_->group->allreduce(t)->wait();
    torch::Tensor host = t[0].to(torch::kCPU);
    return std::vector<double>(host.data_ptr<double>(), host.data_ptr<double>() + host.numel());
  } catch (const std::exception& e) {
    return impl_->Failed(what, e);
  }
}

absl::StatusOr<std::vector<std::vector<int64_t>>> DataParallel::AllGather(
    const std::vector<int64_t>& values, const std::string& what) {
  try {
    const auto opts = torch::TensorOptions().dtype(torch::kInt64).device(impl_->options.device);
    std::vector<torch::Tensor> in = {
        torch::tensor(values, torch::kInt64).to(impl_->options.device)};
    std::vector<std::vector<torch::Tensor>> out(1);
    for (int r = 0; r < impl_->options.world_size; ++r) {
      out[0].push_back(torch::empty({static_cast<int64_t>(values.size())}, opts));
    }
    impl_->group->allgather(out, in)->wait();
    std::vector<std::vector<int64_t>> result;
    for (const torch::Tensor& t : out[0]) {
      torch::Tensor host = t.to(torch::kCPU);
      result.emplace_back(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + host.numel());
    }
    return result;
  } catch (const std::exception& e) {
    return impl_->Failed(what, e);
  }
}

}  // namespace mkd::student
