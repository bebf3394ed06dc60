#include "student_worker/dataset.h"

#include <gtest/gtest.h>
#include <png.h>
#include <turbojpeg.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>

#include "common/file_util.h"

namespace mkd::student {
namespace {

namespace fs = std::filesystem;

std::string NewDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string Be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::string IdxImages(uint32_t n, uint32_t h, uint32_t w) {
  std::string s = Be32(0x803) + Be32(n) + Be32(h) + Be32(w);
  for (uint32_t i = 0; i < n * h * w; ++i) s.push_back(static_cast<char>(i % 251));
  return s;
}

std::string IdxLabels(uint32_t n) {
  std::string s = Be32(0x801) + Be32(n);
  for (uint32_t i = 0; i < n; ++i) s.push_back(static_cast<char>(i % 10));
  return s;
}

void WriteGzip(const std::string& path, const std::string& data) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, data.data(), static_cast<unsigned>(data.size())),
            static_cast<int>(data.size()));
  gzclose(f);
}

void ExpectError(const absl::StatusOr<std::unique_ptr<Dataset>>& d, const std::string& fragment) {
  ASSERT_FALSE(d.ok()) << "expected an error with '" << fragment << "'";
  EXPECT_NE(std::string(d.status().message()).find(fragment), std::string::npos) << d.status();
}

TEST(IdxDatasetTest, ReadsRawAndGzippedFiles) {
  std::string dir = NewDir("idx");
  ASSERT_TRUE(WriteFileAtomic(dir + "/train-images-idx3-ubyte", IdxImages(12, 5, 4)).ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/train-labels-idx1-ubyte", IdxLabels(12)).ok());
  WriteGzip(dir + "/t10k-images-idx3-ubyte.gz", IdxImages(3, 5, 4));
  WriteGzip(dir + "/t10k-labels-idx1-ubyte.gz", IdxLabels(3));
  auto train = OpenIdxDataset(dir, "train");
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ((*train)->size(), 12u);
  auto e = (*train)->Get(2);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->channels, 1);
  EXPECT_EQ(e->height, 5);
  EXPECT_EQ(e->width, 4);
  EXPECT_EQ(e->label, 2);
  EXPECT_EQ(e->pixels[0], 40);  // Image 2 starts at byte 2 * 20.
  auto test = OpenIdxDataset(dir, "test");
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ((*test)->size(), 3u);
  EXPECT_FALSE((*test)->Get(3).ok());
}

TEST(IdxDatasetTest, ErrorsNameTheFile) {
  std::string dir = NewDir("idx_bad");
  ExpectError(OpenIdxDataset(dir, "train"), "train-images-idx3-ubyte");
  ExpectError(OpenIdxDataset(dir, "val"), "split must be train or test");
  std::string images = IdxImages(4, 2, 2);
  ASSERT_TRUE(
      WriteFileAtomic(dir + "/train-images-idx3-ubyte", images.substr(0, images.size() - 3)).ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/train-labels-idx1-ubyte", IdxLabels(4)).ok());
  ExpectError(OpenIdxDataset(dir, "train"),
              "train-images-idx3-ubyte' holds 13 data bytes, its header says 16 (truncated)");
  ASSERT_TRUE(WriteFileAtomic(dir + "/train-images-idx3-ubyte", IdxLabels(4)).ok());
  ExpectError(OpenIdxDataset(dir, "train"), "has IDX magic 0x801, expected 0x803");
  ASSERT_TRUE(WriteFileAtomic(dir + "/train-images-idx3-ubyte", IdxImages(5, 2, 2)).ok());
  ExpectError(OpenIdxDataset(dir, "train"), "has 5 images but");
  // A truncated gzip stream.
  std::string gz_dir = NewDir("idx_gz");
  WriteGzip(gz_dir + "/t10k-images-idx3-ubyte.gz", IdxImages(50, 10, 10));
  auto bytes = ReadFile(gz_dir + "/t10k-images-idx3-ubyte.gz");
  ASSERT_TRUE(
      WriteFileAtomic(gz_dir + "/t10k-images-idx3-ubyte.gz", bytes->substr(0, bytes->size() / 2))
          .ok());
  WriteGzip(gz_dir + "/t10k-labels-idx1-ubyte.gz", IdxLabels(50));
  ExpectError(OpenIdxDataset(gz_dir, "test"), "t10k-images-idx3-ubyte.gz");
}

TEST(IdxDatasetTest, ReadsDebiansFashionMnist) {
  auto train = OpenDataset("fashion_mnist", "", "train");
  ASSERT_TRUE(train.ok()) << train.status() << " (scripts/setup.sh installs dataset-fashion-mnist)";
  auto test = OpenDataset("fashion_mnist", "", "test");
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ((*train)->size(), 60000u);
  EXPECT_EQ((*test)->size(), 10000u);
  // Fashion-MNIST's test split is balanced: 1000 images per class.
  std::vector<int> counts(10);
  for (size_t i = 0; i < (*test)->size(); ++i) counts[(*test)->Get(i)->label]++;
  EXPECT_EQ(counts, std::vector<int>(10, 1000));
  auto e = (*train)->Get(0);
  EXPECT_EQ(e->height, 28);
  EXPECT_EQ(e->label, 9);  // The first training image is an ankle boot.
}

TEST(Cifar10DatasetTest, ReadsRecordsAndRejectsPartialOnes) {
  std::string dir = NewDir("cifar");
  std::string records;
  for (int r = 0; r < 3; ++r) {
    records.push_back(static_cast<char>(r + 4));
    for (int i = 0; i < 3072; ++i) records.push_back(static_cast<char>((i + r) % 256));
  }
  ASSERT_TRUE(WriteFileAtomic(dir + "/test_batch.bin", records).ok());
  auto d = OpenCifar10Dataset(dir, "test");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->size(), 3u);
  auto e = (*d)->Get(1);
  EXPECT_EQ(e->label, 5);
  EXPECT_EQ(e->channels, 3);
  EXPECT_EQ(e->pixels[1024], (1024 + 1) % 256);  // Green plane starts at 1024.
  ExpectError(OpenCifar10Dataset(dir, "train"), "data_batch_1.bin");
  ASSERT_TRUE(WriteFileAtomic(dir + "/test_batch.bin", records.substr(0, 5000)).ok());
  ExpectError(OpenCifar10Dataset(dir, "test"), "not a whole number of 3073-byte records");
  records[0] = 12;
  ASSERT_TRUE(WriteFileAtomic(dir + "/test_batch.bin", records).ok());
  ExpectError(OpenCifar10Dataset(dir, "test"), "record 0 has label 12");
}

std::string EncodePng(int w, int h, bool color) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = w;
  image.height = h;
  image.format = color ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  std::vector<uint8_t> px(PNG_IMAGE_SIZE(image));
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 3);
  png_alloc_size_t size = 0;
  png_image_write_to_memory(&image, nullptr, &size, 0, px.data(), 0, nullptr);
  std::string out(size, '\0');
  png_image_write_to_memory(&image, out.data(), &size, 0, px.data(), 0, nullptr);
  return out;
}

std::string EncodeJpeg(int w, int h) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3, 128);
  tjhandle tj = tjInitCompress();
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  tjCompress2(tj, px.data(), w, 0, h, TJPF_RGB, &buf, &size, TJSAMP_444, 95, 0);
  std::string out(reinterpret_cast<char*>(buf), size);
  tjFree(buf);
  tjDestroy(tj);
  return out;
}

TEST(ImageFolderDatasetTest, DecodesJpegAndPngAndReportsCorruptFiles) {
  std::string root = NewDir("folder");
  fs::create_directories(root + "/train/cat");
  fs::create_directories(root + "/train/dog");
  ASSERT_TRUE(WriteFileAtomic(root + "/train/cat/a.png", EncodePng(6, 4, true)).ok());
  ASSERT_TRUE(WriteFileAtomic(root + "/train/cat/b.PNG", EncodePng(5, 5, false)).ok());
  ASSERT_TRUE(WriteFileAtomic(root + "/train/dog/c.jpg", EncodeJpeg(8, 7)).ok());
  std::string jpeg = EncodeJpeg(16, 16);
  ASSERT_TRUE(WriteFileAtomic(root + "/train/dog/d.jpeg", jpeg.substr(0, jpeg.size() / 2)).ok());
  ASSERT_TRUE(WriteFileAtomic(root + "/train/dog/notes.txt", "ignored").ok());
  auto d = OpenImageFolderDataset(root, "train");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->size(), 4u);
  EXPECT_EQ((*d)->num_classes(), 2);
  auto a = (*d)->Get(0);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->channels, 3);
  EXPECT_EQ(a->width, 6);
  EXPECT_EQ(a->height, 4);
  EXPECT_EQ(a->label, 0);
  EXPECT_EQ(a->pixels[1], 9);  // Red of pixel 1 = source byte 3, which holds 3 * 3.
  auto b = (*d)->Get(1);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->channels, 1);
  auto c = (*d)->Get(2);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->label, 1);
  EXPECT_NEAR(c->pixels[0], 128, 2);
  auto bad = (*d)->Get(3);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("d.jpeg"), std::string::npos) << bad.status();
  ExpectError(OpenImageFolderDataset(root, "val"), "does not exist");
  ExpectError(OpenDataset("imagenet", root, "train"), "unknown dataset kind 'imagenet'");
}

TEST(SyntheticDatasetTest, DeterministicAndShapeChecked) {
  auto d = OpenDataset("synthetic", "3x8x6", "train");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->size(), 1024u);
  auto a = (*d)->Get(5), b = (*d)->Get(5), c = (*d)->Get(6);
  EXPECT_EQ(a->pixels, b->pixels);
  EXPECT_NE(a->pixels, c->pixels);
  EXPECT_EQ(a->pixels.size(), 3u * 8 * 6);
  ExpectError(OpenDataset("synthetic", "3x8", "train"), "must be a shape CxHxW, got '3x8'");
  ExpectError(OpenDataset("synthetic", "3x8x6x", "train"), "CxHxW");
}

}  // namespace
}  // namespace mkd::student
