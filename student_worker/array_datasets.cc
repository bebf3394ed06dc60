// In-memory datasets: IDX (MNIST / Fashion-MNIST) and CIFAR-10 binary.
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "student_worker/dataset.h"

namespace mkd::student {
namespace {

// Fixed-size images held in one buffer.
class ArrayDataset final : public Dataset {
 public:
  ArrayDataset(std::string name, int c, int h, int w, int classes, std::vector<uint8_t> pixels,
               std::vector<uint8_t> labels)
      : name_(std::move(name)),
        c_(c),
        h_(h),
        w_(w),
        classes_(classes),
        pixels_(std::move(pixels)),
        labels_(std::move(labels)) {}

  size_t size() const override { return labels_.size(); }
  int num_classes() const override { return classes_; }
  std::string name() const override { return name_; }

  absl::StatusOr<Example> Get(size_t index) const override {
    if (index >= labels_.size()) {
      return absl::OutOfRangeError(absl::StrCat(name_, ": index ", index, " >= ", size()));
    }
    Example e;
    e.channels = c_;
    e.height = h_;
    e.width = w_;
    const size_t n = static_cast<size_t>(c_) * h_ * w_;
    e.pixels.assign(pixels_.begin() + index * n, pixels_.begin() + (index + 1) * n);
    e.label = labels_[index];
    return e;
  }

 private:
  const std::string name_;
  const int c_, h_, w_, classes_;
  const std::vector<uint8_t> pixels_;  // [N, C, H, W]
  const std::vector<uint8_t> labels_;
};

// Reads a whole file through zlib, which also passes raw files through.
absl::StatusOr<std::string> ReadMaybeGzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  int err = 0;
  const char* msg = gzerror(f, &err);
  bool failed = n < 0 || (err != Z_OK && err != Z_STREAM_END);
  std::string why = failed ? msg : "";
  gzclose(f);
  if (failed) {
    return absl::DataLossError(absl::StrCat("'", path, "' is corrupt or truncated: ", why));
  }
  return out;
}

uint32_t BigEndian32(const std::string& s, size_t at) {
  auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(s[at + i])); };
  return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

// Parses an IDX file of unsigned bytes with `dims` dimensions.
absl::StatusOr<std::vector<uint32_t>> IdxHeader(const std::string& data, const std::string& path,
                                                int dims) {
  const size_t header = 4 + 4 * static_cast<size_t>(dims);
  if (data.size() < 4) return absl::DataLossError(absl::StrCat("'", path, "' is truncated"));
  const uint32_t magic = BigEndian32(data, 0);
  if (magic != 0x800u + static_cast<uint32_t>(dims)) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' has IDX magic 0x",
                                                   absl::Hex(magic), ", expected 0x",
                                                   absl::Hex(0x800 + dims)));
  }
  if (data.size() < header) return absl::DataLossError(absl::StrCat("'", path, "' is truncated"));
  std::vector<uint32_t> shape;
  size_t count = 1;
  for (int i = 0; i < dims; ++i) {
    shape.push_back(BigEndian32(data, 4 + 4 * static_cast<size_t>(i)));
    count *= shape.back();
  }
  if (data.size() != header + count) {
    return absl::DataLossError(absl::StrCat("'", path, "' holds ", data.size() - header,
                                            " data bytes, its header says ", count,
                                            data.size() < header + count ? " (truncated)" : ""));
  }
  return shape;
}

// "<dir>/<stem>" with or without ".gz", whichever exists.
std::string FindIdxFile(const std::string& dir, const std::string& stem) {
  std::string raw = absl::StrCat(dir, "/", stem);
  if (std::filesystem::exists(raw + ".gz")) return raw + ".gz";
  return raw;
}

// Deterministic noise images for benchmarks: example i's pixels come from a
// generator seeded with i; label i % classes.
class SyntheticDataset final : public Dataset {
 public:
  SyntheticDataset(int c, int h, int w, size_t n) : c_(c), h_(h), w_(w), n_(n) {}
  size_t size() const override { return n_; }
  int num_classes() const override { return 10; }
  std::string name() const override { return absl::StrCat("synthetic ", c_, "x", h_, "x", w_); }
  absl::StatusOr<Example> Get(size_t index) const override {
    Example e;
    e.channels = c_;
    e.height = h_;
    e.width = w_;
    uint64_t x = index * 0x9e3779b97f4a7c15ull + 1;
    e.pixels.resize(static_cast<size_t>(c_) * h_ * w_);
    for (auto& p : e.pixels) {  // xorshift64: cheap and reproducible.
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      p = static_cast<uint8_t>(x);
    }
    e.label = static_cast<int64_t>(index % 10);
    return e;
  }

 private:
  const int c_, h_, w_;
  const size_t n_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Dataset>> OpenSyntheticDataset(const std::string& shape) {
  int c, h, w;
  char x1, x2;
  std::istringstream in(shape);
  if (!(in >> c >> x1 >> h >> x2 >> w) || x1 != 'x' || x2 != 'x' || c < 1 || h < 1 || w < 1 ||
      c > 4 || h > 4096 || w > 4096 || !in.eof()) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthetic dataset: data.dir must be a shape CxHxW, got '", shape, "'"));
  }
  return std::make_unique<SyntheticDataset>(c, h, w, 1024);
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenIdxDataset(const std::string& dir,
                                                        const std::string& split) {
  if (split != "train" && split != "test") {
    return absl::InvalidArgumentError(
        absl::StrCat("IDX split must be train or test, not '", split, "'"));
  }
  const std::string prefix = split == "train" ? "train" : "t10k";
  const std::string images_path = FindIdxFile(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = FindIdxFile(dir, prefix + "-labels-idx1-ubyte");
  MKD_ASSIGN_OR_RETURN(std::string images, ReadMaybeGzip(images_path));
  MKD_ASSIGN_OR_RETURN(std::string labels, ReadMaybeGzip(labels_path));
  MKD_ASSIGN_OR_RETURN(auto ishape, IdxHeader(images, images_path, 3));
  MKD_ASSIGN_OR_RETURN(auto lshape, IdxHeader(labels, labels_path, 1));
  if (ishape[0] != lshape[0]) {
    return absl::InvalidArgumentError(absl::StrCat("'", images_path, "' has ", ishape[0],
                                                   " images but '", labels_path, "' has ",
                                                   lshape[0], " labels"));
  }
  std::vector<uint8_t> pixels(images.begin() + 16, images.end());
  std::vector<uint8_t> ys(labels.begin() + 8, labels.end());
  uint8_t max_label = ys.empty() ? 0 : *std::max_element(ys.begin(), ys.end());
  if (max_label > 9) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", labels_path, "' has label ", int{max_label}, " > 9"));
  }
  return std::make_unique<ArrayDataset>(absl::StrCat(dir, "/", split), 1,
                                        static_cast<int>(ishape[1]), static_cast<int>(ishape[2]),
                                        10, std::move(pixels), std::move(ys));
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenCifar10Dataset(const std::string& dir,
                                                            const std::string& split) {
  std::vector<std::string> files;
  if (split == "train") {
    for (int i = 1; i <= 5; ++i) files.push_back(absl::StrCat(dir, "/data_batch_", i, ".bin"));
  } else if (split == "test") {
    files.push_back(dir + "/test_batch.bin");
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("CIFAR-10 split must be train or test, not '", split, "'"));
  }
  constexpr size_t kRecord = 1 + 3 * 32 * 32;
  std::vector<uint8_t> pixels, labels;
  for (const std::string& path : files) {
    MKD_ASSIGN_OR_RETURN(std::string data, ReadFile(path));
    if (data.empty() || data.size() % kRecord != 0) {
      return absl::DataLossError(absl::StrCat("'", path, "' is ", data.size(),
                                              " bytes, not a whole number of 3073-byte records"));
    }
    for (size_t at = 0; at < data.size(); at += kRecord) {
      auto label = static_cast<uint8_t>(data[at]);
      if (label > 9) {
        return absl::InvalidArgumentError(
            absl::StrCat("'", path, "' record ", at / kRecord, " has label ", int{label}, " > 9"));
      }
      labels.push_back(label);
      pixels.insert(pixels.end(), data.begin() + at + 1, data.begin() + at + kRecord);
    }
  }
  return std::make_unique<ArrayDataset>(absl::StrCat(dir, "/", split), 3, 32, 32, 10,
                                        std::move(pixels), std::move(labels));
}

}  // namespace mkd::student
