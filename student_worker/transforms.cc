#include "student_worker/transforms.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace mkd::student {
namespace {

namespace F = torch::nn::functional;
using torch::indexing::Slice;

double Uniform(Rng& rng, double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(rng);
}

int64_t UniformInt(Rng& rng, int64_t lo, int64_t hi) {  // Inclusive.
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

double Beta(Rng& rng, double alpha) {
  double a = std::gamma_distribution<double>(alpha, 1.0)(rng);
  double b = std::gamma_distribution<double>(alpha, 1.0)(rng);
  return a / (a + b);
}

// Applies a 2x3 affine map (normalised coordinates, output -> input) with
// bilinear sampling; pixels from outside the image get `fill`.
torch::Tensor Affine(const torch::Tensor& image, const std::vector<float>& m, double fill) {
  torch::Tensor theta = torch::tensor(m).reshape({1, 2, 3});
  auto size = std::vector<int64_t>{1, image.size(0), image.size(1), image.size(2)};
  torch::Tensor grid = F::affine_grid(theta, size, /*align_corners=*/false);
  auto opts = F::GridSampleFuncOptions()
                  .mode(torch::kBilinear)
                  .padding_mode(torch::kZeros)
                  .align_corners(false);
  torch::Tensor out = F::grid_sample(image.unsqueeze(0), grid, opts);
  torch::Tensor inside =
      F::grid_sample(torch::ones_like(image.narrow(0, 0, 1)).unsqueeze(0), grid, opts);
  return (out + (1 - inside) * fill).squeeze(0);
}

torch::Tensor Grey(const torch::Tensor& image) {
  if (image.size(0) != 3) return image;
  torch::Tensor g = image[0] * 0.299 + image[1] * 0.587 + image[2] * 0.114;
  return g.unsqueeze(0).expand_as(image);
}

torch::Tensor Blend(const torch::Tensor& a, const torch::Tensor& b, double factor) {
  return (b + (a - b) * factor).clamp(0, 1);
}

// One RandAugment op at magnitude level in [0, 1] (m / 10).
torch::Tensor ApplyOp(int op, const torch::Tensor& x, double level, Rng& rng) {
  const double sign = UniformInt(rng, 0, 1) ? 1.0 : -1.0;
  constexpr double kFill = 0.5;
  switch (op) {
    case 0:
      return x;  // Identity.
    case 1: {    // AutoContrast.
      torch::Tensor lo = x.amin({1, 2}, true), hi = x.amax({1, 2}, true);
      return ((x - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1);
    }
    case 2: {  // Rotate up to 30 degrees.
      double a = sign * level * 30.0 * M_PI / 180.0;
      return Affine(
          x,
          {float(std::cos(a)), float(-std::sin(a)), 0, float(std::sin(a)), float(std::cos(a)), 0},
          kFill);
    }
    case 3: {  // Solarize: invert above a threshold.
      double threshold = 1.0 - level;
      return torch::where(x >= threshold, 1 - x, x);
    }
    case 4: {  // Posterize to 8 - 4*level bits.
      double levels = std::pow(2.0, std::max(1.0, std::round(8 - 4 * level)));
      return torch::floor(x * (levels - 1) + 0.5) / (levels - 1);
    }
    case 5:
      return Blend(x, x.mean().expand_as(x), 1 + sign * level * 0.9);  // Contrast.
    case 6:
      return Blend(x, torch::zeros_like(x), 1 + sign * level * 0.9);  // Brightness.
    case 7:
      return Blend(x, Grey(x), 1 + sign * level * 0.9);  // Color.
    case 8:
      return Affine(x, {1, float(sign * level * 0.3), 0, 0, 1, 0}, kFill);  // ShearX.
    case 9:
      return Affine(x, {1, 0, 0, float(sign * level * 0.3), 1, 0}, kFill);  // ShearY.
    case 10:
      return Affine(x, {1, 0, float(sign * level * 0.9), 0, 1, 0}, kFill);  // TranslateX 45%.
    case 11:
      return Affine(x, {1, 0, 0, 0, 1, float(sign * level * 0.9)}, kFill);  // TranslateY 45%.
  }
  return x;
}

constexpr int kNumOps = 12;

torch::Tensor ToChannels(const torch::Tensor& x, int channels) {
  if (x.size(0) == channels) return x;
  if (x.size(0) == 1) return x.expand({channels, x.size(1), x.size(2)}).contiguous();
  if (channels == 1) return Grey(x).narrow(0, 0, 1).contiguous();
  TORCH_CHECK(false, "cannot turn ", x.size(0), " channels into ", channels);
}

torch::Tensor Normalize(const torch::Tensor& x, const TransformConfig& c) {
  torch::Tensor mean = torch::tensor(c.mean, torch::kFloat32).reshape({-1, 1, 1});
  torch::Tensor std = torch::tensor(c.std, torch::kFloat32).reshape({-1, 1, 1});
  return (x - mean) / std;
}

}  // namespace

uint64_t MixSeed(std::initializer_list<uint64_t> parts) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (uint64_t p : parts) {
    h ^= p + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h += 0x9e3779b97f4a7c15ull;  // SplitMix64 finaliser.
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return h;
}

absl::Status ValidateTransformConfig(const TransformConfig& c) {
  auto bad = [](const char* key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("transform '", key, "': ", why));
  };
  if (c.img_size < 1) return bad("img_size", "must be positive");
  if (c.channels != 1 && c.channels != 3) return bad("channels", "must be 1 or 3");
  if (static_cast<int>(c.mean.size()) != c.channels)
    return bad("mean", "needs one entry per channel");
  if (static_cast<int>(c.std.size()) != c.channels)
    return bad("std", "needs one entry per channel");
  if (!(c.rrc_min_scale > 0 && c.rrc_min_scale <= 1))
    return bad("rrc_min_scale", "must be in (0, 1]");
  if (c.pad_crop < 0) return bad("pad_crop", "must be >= 0");
  if (c.randaugment_ops < 0 || c.randaugment_ops > 10)
    return bad("randaugment_ops", "must be in [0, 10]");
  if (!(c.randaugment_magnitude >= 0 && c.randaugment_magnitude <= 10)) {
    return bad("randaugment_magnitude", "must be in [0, 10]");
  }
  if (!(c.random_erasing >= 0 && c.random_erasing <= 1))
    return bad("random_erasing", "must be in [0, 1]");
  if (!(c.crop_pct > 0 && c.crop_pct <= 1)) return bad("crop_pct", "must be in (0, 1]");
  return absl::OkStatus();
}

torch::Tensor ToFloat(const Example& e) {
  torch::Tensor t = torch::from_blob(const_cast<uint8_t*>(e.pixels.data()),
                                     {e.channels, e.height, e.width}, torch::kUInt8);
  return t.to(torch::kFloat32) / 255.0;
}

torch::Tensor Resize(const torch::Tensor& image, int64_t height, int64_t width) {
  if (image.size(1) == height && image.size(2) == width) return image;
  return F::interpolate(image.unsqueeze(0), F::InterpolateFuncOptions()
                                                .size(std::vector<int64_t>{height, width})
                                                .mode(torch::kBilinear)
                                                .align_corners(false))
      .squeeze(0);
}

torch::Tensor CenterCrop(const torch::Tensor& image, int64_t size) {
  int64_t top = (image.size(1) - size) / 2, left = (image.size(2) - size) / 2;
  TORCH_CHECK(top >= 0 && left >= 0, "image smaller than the crop");
  return image.index({Slice(), Slice(top, top + size), Slice(left, left + size)});
}

torch::Tensor RandomResizedCrop(const torch::Tensor& image, int64_t size, double min_scale,
                                Rng& rng) {
  const int64_t h = image.size(1), w = image.size(2);
  const double area = static_cast<double>(h * w);
  for (int attempt = 0; attempt < 10; ++attempt) {
    double target = area * Uniform(rng, min_scale, 1.0);
    double ratio = std::exp(Uniform(rng, std::log(3.0 / 4), std::log(4.0 / 3)));
    auto cw = static_cast<int64_t>(std::round(std::sqrt(target * ratio)));
    auto ch = static_cast<int64_t>(std::round(std::sqrt(target / ratio)));
    if (cw >= 1 && ch >= 1 && cw <= w && ch <= h) {
      int64_t top = UniformInt(rng, 0, h - ch), left = UniformInt(rng, 0, w - cw);
      return Resize(image.index({Slice(), Slice(top, top + ch), Slice(left, left + cw)}), size,
                    size);
    }
  }
  int64_t side = std::min(h, w);  // Fallback: the central square, as torchvision.
  return Resize(CenterCrop(image, side), size, size);
}

torch::Tensor PadCrop(const torch::Tensor& image, int64_t pad, Rng& rng) {
  if (pad == 0) return image;
  const int64_t h = image.size(1), w = image.size(2);
  torch::Tensor padded = F::pad(image, F::PadFuncOptions({pad, pad, pad, pad}));
  int64_t top = UniformInt(rng, 0, 2 * pad), left = UniformInt(rng, 0, 2 * pad);
  return padded.index({Slice(), Slice(top, top + h), Slice(left, left + w)});
}

torch::Tensor RandAugment(const torch::Tensor& image, int ops, double magnitude, Rng& rng) {
  torch::Tensor x = image;
  for (int i = 0; i < ops; ++i) {
    x = ApplyOp(static_cast<int>(UniformInt(rng, 0, kNumOps - 1)), x, magnitude / 10.0, rng);
  }
  return x;
}

void RandomErase(torch::Tensor& image, Rng& rng) {
  // timm's RandomErasing 'pixel' mode: a box of 2-33% of the area, aspect
  // (0.3, 3.3), filled with N(0, 1) noise in normalised space.
  const int64_t h = image.size(1), w = image.size(2);
  for (int attempt = 0; attempt < 10; ++attempt) {
    double target = h * w * Uniform(rng, 0.02, 1.0 / 3);
    double ratio = std::exp(Uniform(rng, std::log(0.3), std::log(1 / 0.3)));
    auto eh = static_cast<int64_t>(std::round(std::sqrt(target * ratio)));
    auto ew = static_cast<int64_t>(std::round(std::sqrt(target / ratio)));
    if (eh < 1 || ew < 1 || eh >= h || ew >= w) continue;
    int64_t top = UniformInt(rng, 0, h - eh), left = UniformInt(rng, 0, w - ew);
    std::normal_distribution<float> noise(0.f, 1.f);
    torch::Tensor box = torch::empty({image.size(0), eh, ew});
    float* p = box.data_ptr<float>();
    for (int64_t i = 0; i < box.numel(); ++i) p[i] = noise(rng);
    image.index_put_({Slice(), Slice(top, top + eh), Slice(left, left + ew)}, box);
    return;
  }
}

torch::Tensor TrainTransform(const Example& e, const TransformConfig& c, Rng& rng) {
  torch::Tensor x = ToFloat(e);
  x = c.random_resized_crop ? RandomResizedCrop(x, c.img_size, c.rrc_min_scale, rng)
                            : Resize(x, c.img_size, c.img_size);
  x = PadCrop(x, c.pad_crop, rng);
  if (c.hflip && UniformInt(rng, 0, 1)) x = x.flip(2);
  if (c.randaugment_ops > 0) x = RandAugment(x, c.randaugment_ops, c.randaugment_magnitude, rng);
  x = Normalize(ToChannels(x, c.channels), c).contiguous();
  if (c.random_erasing > 0 && Uniform(rng, 0, 1) < c.random_erasing) RandomErase(x, rng);
  return x;
}

torch::Tensor EvalTransform(const Example& e, const TransformConfig& c) {
  torch::Tensor x = ToFloat(e);
  auto scaled = static_cast<int64_t>(std::floor(c.img_size / c.crop_pct));
  const int64_t h = x.size(1), w = x.size(2);
  // Short side to `scaled`, keeping the aspect ratio, then the center.
  int64_t nh = h <= w ? scaled : static_cast<int64_t>(std::round(double(h) * scaled / w));
  int64_t nw = h <= w ? static_cast<int64_t>(std::round(double(w) * scaled / h)) : scaled;
  x = CenterCrop(Resize(x, nh, nw), c.img_size);
  return Normalize(ToChannels(x, c.channels), c).contiguous();
}

torch::Tensor MixBatch(torch::Tensor& images, const torch::Tensor& labels, int64_t classes,
                       const MixConfig& c, Rng& rng) {
  const double off = c.label_smoothing / classes;
  const double on = 1.0 - c.label_smoothing + off;
  torch::Tensor y1 =
      torch::full({labels.size(0), classes}, off).scatter_(1, labels.unsqueeze(1), on);
  const bool any = c.mixup_alpha > 0 || c.cutmix_alpha > 0;
  if (!any || Uniform(rng, 0, 1) >= c.prob) return y1;
  const bool cutmix =
      c.cutmix_alpha > 0 && (c.mixup_alpha <= 0 || Uniform(rng, 0, 1) < c.switch_prob);
  torch::Tensor flipped = images.flip(0);
  double lam;
  if (cutmix) {
    lam = Beta(rng, c.cutmix_alpha);
    const int64_t h = images.size(2), w = images.size(3);
    double cut = std::sqrt(1.0 - lam);
    auto ch = static_cast<int64_t>(h * cut), cw = static_cast<int64_t>(w * cut);
    int64_t cy = UniformInt(rng, 0, h - 1), cx = UniformInt(rng, 0, w - 1);
    int64_t y0 = std::clamp<int64_t>(cy - ch / 2, 0, h),
            y1b = std::clamp<int64_t>(cy + ch / 2, 0, h);
    int64_t x0 = std::clamp<int64_t>(cx - cw / 2, 0, w),
            x1b = std::clamp<int64_t>(cx + cw / 2, 0, w);
    auto box =
        std::vector<torch::indexing::TensorIndex>{Slice(), Slice(), Slice(y0, y1b), Slice(x0, x1b)};
    images.index_put_(box, flipped.index(box));
    lam = 1.0 - double((y1b - y0) * (x1b - x0)) / double(h * w);  // Exact pasted area.
  } else {
    lam = Beta(rng, c.mixup_alpha);
    images.mul_(lam).add_(flipped * (1.0 - lam));
  }
  return y1 * lam + y1.flip(0) * (1.0 - lam);
}

}  // namespace mkd::student
