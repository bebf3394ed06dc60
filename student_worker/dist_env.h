// Where a data-parallel rank learns its place in the job: the `dist.*`
// config keys, and for each key left at its default the environment that
// torchrun and Kubeflow's PyTorchJob set (WORLD_SIZE, RANK, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT). A key set in the config wins over the
// environment, so one YAML can pin a layout for tests. Torch-free.
#ifndef MKD_STUDENT_WORKER_DIST_ENV_H_
#define MKD_STUDENT_WORKER_DIST_ENV_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "student_worker/train_config.h"

namespace mkd::student {

// Looks up one environment variable; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// The process's own environment.
EnvLookup ProcessEnv();

// `config` with every default filled in: world_size >= 1, rank and
// local_rank >= 0, master_addr and master_port set. kInvalidArgument naming
// the key or variable: a malformed number, a rank outside [0, world_size),
// or a multi-rank job whose rank is given nowhere.
absl::StatusOr<DistConfig> ResolveDistEnv(const DistConfig& config, const EnvLookup& env);

// run.device for this rank: with several ranks on CUDA, plain "cuda" means
// the GPU of the rank's local_rank (one GPU per rank, as torchrun assigns).
std::string DeviceForRank(const std::string& device, const DistConfig& resolved);

}  // namespace mkd::student

#endif  // MKD_STUDENT_WORKER_DIST_ENV_H_
