#include "student_worker/image_decode.h"

#include <png.h>
#include <turbojpeg.h>

#include <cstring>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mkd::student {
namespace {

// HWC interleaved -> CHW planar.
void ToPlanar(const std::vector<uint8_t>& hwc, int c, int h, int w, Example* e) {
  e->channels = c;
  e->height = h;
  e->width = w;
  e->pixels.resize(hwc.size());
  const size_t plane = static_cast<size_t>(h) * w;
  for (size_t p = 0; p < plane; ++p) {
    for (int ch = 0; ch < c; ++ch) e->pixels[ch * plane + p] = hwc[p * c + ch];
  }
}

absl::StatusOr<Example> DecodeJpeg(absl::string_view bytes) {
  std::unique_ptr<void, int (*)(tjhandle)> tj(tjInitDecompress(), tjDestroy);
  if (!tj) return absl::InternalError("cannot start libjpeg-turbo");
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  auto* src = reinterpret_cast<const unsigned char*>(bytes.data());
  if (tjDecompressHeader3(tj.get(), src, bytes.size(), &w, &h, &subsamp, &colorspace) != 0) {
    return absl::DataLossError(absl::StrCat("corrupt JPEG header: ", tjGetErrorStr2(tj.get())));
  }
  if (w <= 0 || h <= 0 || static_cast<int64_t>(w) * h > (int64_t{1} << 28)) {
    return absl::DataLossError(absl::StrCat("JPEG has unreasonable size ", w, "x", h));
  }
  const bool grey = colorspace == TJCS_GRAY;
  const int c = grey ? 1 : 3;
  std::vector<uint8_t> hwc(static_cast<size_t>(w) * h * c);
  if (tjDecompress2(tj.get(), src, bytes.size(), hwc.data(), w, 0, h, grey ? TJPF_GRAY : TJPF_RGB,
                    0) != 0) {
    // Warnings too: a truncated file decodes "successfully" with grey rows.
    return absl::DataLossError(absl::StrCat("corrupt JPEG data: ", tjGetErrorStr2(tj.get())));
  }
  Example e;
  ToPlanar(hwc, c, h, w, &e);
  return e;
}

absl::StatusOr<Example> DecodePng(absl::string_view bytes) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size())) {
    return absl::DataLossError(absl::StrCat("corrupt PNG: ", image.message));
  }
  const bool grey = (image.format & PNG_FORMAT_FLAG_COLOR) == 0;
  image.format = grey ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;  // Alpha is composited away.
  if (static_cast<int64_t>(image.width) * image.height > (int64_t{1} << 28)) {
    png_image_free(&image);
    return absl::DataLossError("PNG is unreasonably large");
  }
  std::vector<uint8_t> hwc(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, hwc.data(), 0, nullptr)) {
    std::string why = image.message;
    png_image_free(&image);
    return absl::DataLossError(absl::StrCat("corrupt PNG: ", why));
  }
  Example e;
  ToPlanar(hwc, grey ? 1 : 3, static_cast<int>(image.height), static_cast<int>(image.width), &e);
  return e;
}

}  // namespace

absl::StatusOr<Example> DecodeImage(absl::string_view bytes) {
  if (absl::StartsWith(bytes, "\xff\xd8\xff")) return DecodeJpeg(bytes);
  if (absl::StartsWith(bytes, "\x89PNG\r\n\x1a\n")) return DecodePng(bytes);
  return absl::InvalidArgumentError("not a JPEG or PNG image");
}

}  // namespace mkd::student
