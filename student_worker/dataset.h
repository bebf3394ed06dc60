// Datasets for training and evaluation: an interface and the formats users
// bring (Fashion-MNIST/MNIST IDX, CIFAR-10 binary, ImageNet-style folders).
//
// Torch-free: an Example is a uint8 CHW image; transforms turn it into a
// tensor. Implementations are immutable after Open*(), so Get() is safe to
// call from many loader threads at once.
#ifndef MKD_STUDENT_WORKER_DATASET_H_
#define MKD_STUDENT_WORKER_DATASET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mkd::student {

struct Example {
  int channels = 0;
  int height = 0;
  int width = 0;
  std::vector<uint8_t> pixels;  // [channels, height, width], row-major.
  int64_t label = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual size_t size() const = 0;
  virtual int num_classes() const = 0;
  // The i-th example (0 <= i < size()). An error means that one example is
  // unreadable (e.g. a corrupt image file); the loader skips and counts it.
  virtual absl::StatusOr<Example> Get(size_t index) const = 0;
  // "fashion_mnist/train" etc., for logs.
  virtual std::string name() const = 0;
};

// Where Debian's dataset-fashion-mnist package puts the files.
inline constexpr char kDebianFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

// IDX files (MNIST / Fashion-MNIST), gzipped or raw: `dir` holds
// {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. `split` is "train" or
// "test". Errors name the file: missing, truncated, bad magic, or image and
// label counts that disagree.
absl::StatusOr<std::unique_ptr<Dataset>> OpenIdxDataset(const std::string& dir,
                                                        const std::string& split);

// CIFAR-10 binary batches in `dir` (data_batch_{1..5}.bin for "train",
// test_batch.bin for "test"): records of 1 label byte + 3072 pixel bytes.
absl::StatusOr<std::unique_ptr<Dataset>> OpenCifar10Dataset(const std::string& dir,
                                                            const std::string& split);

// ImageNet-style folders: `root/<split>/<class>/*.{jpg,jpeg,png}` (class
// index = sorted folder name order). Images are decoded on Get(); a corrupt
// one is an error for that index only.
absl::StatusOr<std::unique_ptr<Dataset>> OpenImageFolderDataset(const std::string& root,
                                                                const std::string& split);

// 1024 deterministic noise images of `shape` "CxHxW", 10 classes: for
// benchmarks, where only the cost of a step matters.
absl::StatusOr<std::unique_ptr<Dataset>> OpenSyntheticDataset(const std::string& shape);

// Opens by kind: "fashion_mnist" / "mnist" (IDX; empty dir means Debian's
// Fashion-MNIST), "cifar10", "image_folder", "synthetic" (dir = "CxHxW").
absl::StatusOr<std::unique_ptr<Dataset>> OpenDataset(const std::string& kind,
                                                     const std::string& dir,
                                                     const std::string& split);

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_DATASET_H_
