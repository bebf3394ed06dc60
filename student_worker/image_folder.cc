// ImageNet-style folder dataset: root/<split>/<class>/*.{jpg,jpeg,png}.
#include <algorithm>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "student_worker/dataset.h"
#include "student_worker/image_decode.h"

namespace mkd::student {
namespace {

namespace fs = std::filesystem;

class ImageFolderDataset final : public Dataset {
 public:
  ImageFolderDataset(std::string name, std::vector<std::string> files, std::vector<int64_t> labels,
                     int classes)
      : name_(std::move(name)),
        files_(std::move(files)),
        labels_(std::move(labels)),
        classes_(classes) {}

  size_t size() const override { return files_.size(); }
  int num_classes() const override { return classes_; }
  std::string name() const override { return name_; }

  absl::StatusOr<Example> Get(size_t index) const override {
    if (index >= files_.size()) {
      return absl::OutOfRangeError(absl::StrCat(name_, ": index ", index, " >= ", size()));
    }
    MKD_ASSIGN_OR_RETURN(std::string bytes, ReadFile(files_[index], size_t{1} << 28));
    auto image = DecodeImage(bytes);
    if (!image.ok()) return Annotate(image.status(), absl::StrCat("'", files_[index], "'"));
    image->label = labels_[index];
    return image;
  }

 private:
  const std::string name_;
  const std::vector<std::string> files_;
  const std::vector<int64_t> labels_;
  const int classes_;
};

bool IsImageFile(const fs::path& p) {
  std::string ext = absl::AsciiStrToLower(p.extension().string());
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

}  // namespace

absl::StatusOr<std::unique_ptr<Dataset>> OpenImageFolderDataset(const std::string& root,
                                                                const std::string& split) {
  const fs::path dir = fs::path(root) / split;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("image folder '", dir.string(), "' does not exist"));
  }
  std::vector<std::string> classes;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_directory()) classes.push_back(entry.path().filename().string());
  }
  std::sort(classes.begin(), classes.end());
  if (classes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("'", dir.string(), "' has no class folders"));
  }
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  for (size_t c = 0; c < classes.size(); ++c) {
    std::vector<std::string> in_class;
    for (const auto& entry : fs::directory_iterator(dir / classes[c], ec)) {
      if (entry.is_regular_file() && IsImageFile(entry.path())) {
        in_class.push_back(entry.path().string());
      }
    }
    std::sort(in_class.begin(), in_class.end());  // Directory order is not stable.
    for (auto& f : in_class) {
      files.push_back(std::move(f));
      labels.push_back(static_cast<int64_t>(c));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("listing '", dir.string(), "': ", ec.message()));
  if (files.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", dir.string(), "' has no .jpg/.jpeg/.png files"));
  }
  return std::make_unique<ImageFolderDataset>(dir.string(), std::move(files), std::move(labels),
                                              static_cast<int>(classes.size()));
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenDataset(const std::string& kind,
                                                     const std::string& dir,
                                                     const std::string& split) {
  if (kind == "fashion_mnist" || kind == "mnist") {
    if (dir.empty() && kind == "mnist") {
      return absl::InvalidArgumentError("dataset kind 'mnist' needs a data directory");
    }
    return OpenIdxDataset(dir.empty() ? kDebianFashionMnistDir : dir, split);
  }
  if (kind == "cifar10") return OpenCifar10Dataset(dir, split);
  if (kind == "image_folder") return OpenImageFolderDataset(dir, split);
  if (kind == "synthetic") return OpenSyntheticDataset(dir);
  return absl::InvalidArgumentError(absl::StrCat("unknown dataset kind '", kind,
                                                 "'; expected fashion_mnist, mnist, cifar10, "
                                                 "image_folder or synthetic"));
}

}  // namespace mkd::student
