#include "student_worker/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace mkd::student {
namespace {

namespace fs = std::filesystem;

std::string Dir(const std::string& out_dir) { return out_dir + "/checkpoints"; }

}  // namespace

CheckpointPaths CheckpointFor(const std::string& out_dir, int64_t step) {
  std::string stem = absl::StrFormat("%s/step_%08d", Dir(out_dir), step);
  return {stem + ".model.safetensors", stem + ".state.safetensors"};
}

absl::Status WriteCheckpoint(const std::string& out_dir, int64_t step, const SafetensorsFile& model,
                             const SafetensorsFile& state, int keep) {
  std::error_code ec;
  fs::create_directories(Dir(out_dir), ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create '", Dir(out_dir), "': ", ec.message()));
  CheckpointPaths paths = CheckpointFor(out_dir, step);
  MKD_RETURN_IF_ERROR(WriteSafetensors(paths.model, model));
  MKD_RETURN_IF_ERROR(WriteSafetensors(paths.state, state));
  MKD_RETURN_IF_ERROR(WriteFileAtomic(Dir(out_dir) + "/latest", absl::StrCat(step, "\n")));

  // Keep the newest `keep` complete checkpoints.
  std::vector<int64_t> steps = CheckpointSteps(out_dir);
  for (size_t i = static_cast<size_t>(std::max(keep, 1)); i < steps.size(); ++i) {
    CheckpointPaths old = CheckpointFor(out_dir, steps[i]);
    fs::remove(old.model, ec);
    fs::remove(old.state, ec);
  }
  return absl::OkStatus();
}

std::vector<int64_t> CheckpointSteps(const std::string& out_dir) {
  std::vector<int64_t> steps;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(Dir(out_dir), ec)) {
    std::string name = entry.path().filename().string();
    int64_t s;
    if (name.rfind("step_", 0) == 0 && name.size() > 13 &&
        name.substr(13) == ".state.safetensors" && absl::SimpleAtoi(name.substr(5, 8), &s) &&
        fs::exists(CheckpointFor(out_dir, s).model, ec)) {
      steps.push_back(s);
    }
  }
  std::sort(steps.rbegin(), steps.rend());
  return steps;
}

absl::StatusOr<std::optional<int64_t>> LatestCheckpoint(const std::string& out_dir) {
  auto text = ReadFile(Dir(out_dir) + "/latest");
  if (absl::IsNotFound(text.status())) return std::optional<int64_t>();
  if (!text.ok()) return text.status();
  int64_t step;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &step) || step < 0) {
    return absl::DataLossError(
        absl::StrCat("'", Dir(out_dir), "/latest' does not hold a step number"));
  }
  CheckpointPaths paths = CheckpointFor(out_dir, step);
  if (!fs::exists(paths.model) || !fs::exists(paths.state)) {
    return absl::DataLossError(absl::StrCat("'", Dir(out_dir), "/latest' names step ", step,
                                            " but its files are missing"));
  }
  return std::optional<int64_t>(step);
}

}  // namespace mkd::student
