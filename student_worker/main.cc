// mkd-student: train or evaluate a ViT, plainly or by MaskedKD distillation.
//   mkd-student train --config file.yaml [--set key=value ...] [--resume]
//   mkd-student eval  --config file.yaml --checkpoint model.safetensors [--set ...]
#include <cstdio>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/runtime.h"
#include "common/status_macros.h"
#include "student_worker/dist_env.h"
#include "student_worker/trainer.h"
#include "teacher_client/job_teacher.h"

namespace {

constexpr int kUsageError = 2;

const std::vector<mkd::FlagSpec>& Specs() {
  static const auto* specs = new std::vector<mkd::FlagSpec>{
      {"config", true, "training config (.yaml)"},
      {"set", true, "override a config key: section.key=value (repeatable)", true},
      {"resume", false, "continue from the latest checkpoint in run.out_dir"},
      {"checkpoint", true, "eval: student weights (.safetensors)"},
  };
  return *specs;
}

int Usage(std::ostream& os) {
  os << "usage: mkd-student train --config C.yaml [--set k=v ...] [--resume]\n"
        "       mkd-student eval --config C.yaml --checkpoint W.safetensors [--set k=v ...]\n"
     << mkd::FlagsUsage(Specs());
  return kUsageError;
}

absl::Status Run(const std::string& command, const mkd::ParsedFlags& flags) {
  MKD_ASSIGN_OR_RETURN(std::string path, flags.Required("config"));
  MKD_ASSIGN_OR_RETURN(mkd::student::TrainConfig config,
                       mkd::student::LoadTrainConfig(path, flags.GetAll("set")));
  mkd::ConfigureRuntime(config.run.threads);
  if (command == "eval") {
    config.dist.world_size = 1;  // Evaluation is one process.
    MKD_ASSIGN_OR_RETURN(std::string weights, flags.Required("checkpoint"));
    config.mode = "train";  // Eval needs no teacher.
    MKD_ASSIGN_OR_RETURN(auto trainer, mkd::student::Trainer::Create(config));
    MKD_RETURN_IF_ERROR(trainer->LoadWeights(weights));
    MKD_ASSIGN_OR_RETURN(mkd::student::EvalResult r, trainer->Evaluate());
    std::printf("eval: top1 %.2f%% top5 %.2f%% loss %.4f on %lld images\n", 100 * r.top1,
                100 * r.top5, r.loss, static_cast<long long>(r.images));
    return absl::OkStatus();
  }
  // Data parallel: the rank's place from dist.* and the environment.
  MKD_ASSIGN_OR_RETURN(config.dist,
                       mkd::student::ResolveDistEnv(config.dist, mkd::student::ProcessEnv()));
  config.run.device = mkd::student::DeviceForRank(config.run.device, config.dist);
  MKD_ASSIGN_OR_RETURN(auto trainer,
                       mkd::student::Trainer::Create(config, nullptr, mkd::client::MakeJobTeacher));
  MKD_RETURN_IF_ERROR(trainer->Train(flags.Has("resume")));
  std::optional<mkd::student::EvalResult> final_eval = trainer->final_eval();
  if (!final_eval) {
    MKD_ASSIGN_OR_RETURN(final_eval, trainer->Evaluate());
  }
  const mkd::student::EvalResult& r = *final_eval;
  if (config.dist.world_size > 1)
    std::printf("rank %d/%d: ", config.dist.rank, config.dist.world_size);
  std::printf("summary: mode %s, %lld steps, top1 %.2f%%, top5 %.2f%%", config.mode.c_str(),
              static_cast<long long>(trainer->step()), 100 * r.top1, 100 * r.top5);
  if (config.mode == "distill") {
    std::printf(", teacher GFLOPs %.1f vs %.1f for vanilla KD (%.2fx fewer)",
                trainer->teacher_flops_spent() / 1e9, trainer->teacher_flops_full() / 1e9,
                trainer->teacher_flops_full() / std::max(1.0, trainer->teacher_flops_spent()));
  }
  std::printf("\nweights: %s/checkpoints (latest)\n", config.run.out_dir.c_str());
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  mkd::InitLogging("mkd-student");
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || (args[0] != "train" && args[0] != "eval")) {
    if (!args.empty() && args[0] != "--help")
      std::cerr << "mkd-student: error: unknown command '" << args[0] << "'\n";
    return args.empty() || args[0] != "--help" ? Usage(std::cerr) : (Usage(std::cout), 0);
  }
  const std::string command = args[0];
  args.erase(args.begin());
  auto flags = mkd::ParseFlags(args, Specs());
  if (!flags.ok()) {
    std::cerr << "mkd-student " << command << ": error: " << flags.status().message() << "\n";
    return kUsageError;
  }
  absl::Status status;
  try {
    status = Run(command, *flags);
  } catch (const std::exception& e) {  // No exception leaves main.
    status = absl::InternalError(e.what());
  }
  if (!status.ok()) {
    std::cerr << "mkd-student " << command << ": error: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
