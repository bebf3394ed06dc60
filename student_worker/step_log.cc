#include "student_worker/step_log.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "nlohmann/json.hpp"

namespace mkd::student {
namespace {

// Drops the lines of `path` (metrics.jsonl) logged for steps after `step`.
// Lines without a step are kept. A missing file is fine (nothing was logged).
absl::Status DropLinesAfter(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return absl::OkStatus();
  std::string kept;
  bool dropped = false;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
        j["step"].get<int64_t>() > step) {
      dropped = true;
      continue;
    }
    kept += line + "\n";
  }
  if (!dropped) return absl::OkStatus();
  // Replaced whole (a crash leaves the old file or the new one).
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kept;
    if (!out.flush()) return absl::InternalError("cannot rewrite " + path);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError("cannot rewrite " + path + ": " + ec.message());
  return absl::OkStatus();
}

std::string Duration(double seconds) {
  auto s = static_cast<int64_t>(seconds);
  return s >= 3600 ? absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60)
                   : absl::StrFormat("%dm%02ds", s / 60, s % 60);
}

double Now() { return absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()); }

}  // namespace

StepLog::StepLog(std::string rank_tag, int ranks) : rank_tag_(std::move(rank_tag)), ranks_(ranks) {}

StepLog::~StepLog() {
  if (jsonl_ != nullptr) std::fclose(jsonl_);
}

absl::Status StepLog::OpenJsonl(const std::string& out_dir, bool resume, int64_t resumed_step) {
  const std::string path = out_dir + "/metrics.jsonl";
  if (resume) {
    absl::Status dropped = DropLinesAfter(path, resumed_step);
    if (!dropped.ok()) return dropped;
  }
  if (jsonl_ != nullptr) std::fclose(jsonl_);
  jsonl_ = std::fopen(path.c_str(), resume ? "a" : "w");
  if (jsonl_ == nullptr) return absl::InternalError("cannot open metrics.jsonl in " + out_dir);
  return absl::OkStatus();
}

void StepLog::Step(const Progress& p, const StepResult& r, double images_per_s, double eta_s,
                   bool distill, std::optional<double> loss_scale) {
  std::string line = absl::StrFormat(
      "%sepoch %d/%d step %d/%d loss %.4f ce %.4f kd %.4f lr %.2e img/s %.1f", rank_tag_, p.epoch,
      p.epochs, p.step, p.total_steps, r.loss, r.ce, r.kd, r.lr, images_per_s);
  const double bubble = r.timings.step_s > 0 ? r.wait_s / r.timings.step_s : 0;
  if (distill) {
    absl::StrAppendFormat(&line, " k %d teacher GFLOPs %.1f (saved %.1f)", r.kept_patches,
                          p.flops_spent / 1e9, (p.flops_full - p.flops_spent) / 1e9);
    // Pipelining: m, the step as measured and as the pool's plan predicted
    // it, and how much of it the student spent waiting for answers.
    absl::StrAppendFormat(&line, " m %d step %.3fs", r.timings.micro_batches, r.timings.step_s);
    if (r.timings.predicted_step_s > 0)
      absl::StrAppendFormat(&line, " (predicted %.3fs)", r.timings.predicted_step_s);
    absl::StrAppendFormat(&line, " bubble %.0f%%", 100 * bubble);
  }
  if (loss_scale)
    absl::StrAppendFormat(&line, " scale %.0f%s", *loss_scale, r.skipped ? " (skipped)" : "");
  MKD_LOG(INFO) << line << " eta " << Duration(eta_s);
  nlohmann::json j = {{"type", "train"},
                      {"step", p.step},
                      {"epoch", p.epoch},
                      {"loss", r.loss},
                      {"time", Now()},
                      {"ce", r.ce},
                      {"kd", r.kd},
                      {"lr", r.lr},
                      {"img_per_s", images_per_s},
                      {"kept_patches", r.kept_patches},
                      {"teacher_flops", p.flops_spent},
                      {"teacher_flops_full", p.flops_full}};
  if (ranks_ > 1) j["ranks"] = ranks_;
  if (distill) {
    j["micro_batches"] = r.timings.micro_batches;
    j["step_seconds"] = r.timings.step_s;
    j["predicted_step_seconds"] = r.timings.predicted_step_s;
    j["bubble"] = bubble;
    // This step's stages, means over its micro-batches (this rank's).
    const StageMeans means = MeanOverMicroBatches(r.stages);
    nlohmann::json stages = nlohmann::json::object();
    for (mkd::Stage s : AllStages()) {
      if (means.mean.has(s)) stages[std::string(StageName(s))] = means.mean.get(s);
    }
    j["stages"] = stages;
  }
  AppendJson(j.dump());
}

void StepLog::Eval(const Progress& p, const EvalResult& e) {
  MKD_LOG(INFO) << absl::StrFormat("%seval epoch %d: top1 %.2f%% top5 %.2f%% loss %.4f (%d images)",
                                   rank_tag_, p.epoch, 100 * e.top1, 100 * e.top5, e.loss,
                                   e.images);
  nlohmann::json j = {{"type", "eval"},
                      {"step", p.step},
                      {"epoch", p.epoch},
                      {"top1", e.top1},
                      {"top5", e.top5},
                      {"loss", e.loss},
                      {"images", e.images},
                      {"teacher_flops", p.flops_spent},
                      {"teacher_flops_full", p.flops_full}};
  AppendJson(j.dump());
}

void StepLog::AppendJson(const std::string& line) {
  if (jsonl_ == nullptr) return;
  std::fprintf(jsonl_, "%s\n", line.c_str());
  std::fflush(jsonl_);
}

}  // namespace mkd::student
