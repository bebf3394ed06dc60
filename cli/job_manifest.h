// `mkd job manifest`: the Kubernetes manifests of one distillation job on
// a teacher pool (deploy/k8s), printed for `kubectl apply -f -`. Each job
// is its own set of objects, every name and label derived from --name, so
// any number of jobs run side by side in one namespace:
//   - an Indexed Job of --ranks pods (or a JobSet, --kind jobset) whose
//     completion index is the rank;
//   - a headless Service with publishNotReadyAddresses (rank 0's DNS name
//     resolves before any rank is ready: the ranks rendezvous before they
//     train); a JobSet makes its own;
//   - a ConfigMap holding the student config, its name hashed from the
//     content (a changed config is a new Job, never a silent mix);
//   - the job-token Secret, minted when --pool-secret-file is given, else
//     referenced by name;
//   - a ReadWriteMany checkpoint claim when ranks > 1 (ranks on different
//     nodes all mount it), ReadWriteOnce for one rank;
//   - a NetworkPolicy letting the job's ranks reach each other (Gloo opens
//     ports of its own) and Prometheus reach /metrics.
// Torch-free. docs/kubernetes.md, "Jobs", is the user's guide.
#ifndef MKD_CLI_JOB_MANIFEST_H_
#define MKD_CLI_JOB_MANIFEST_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/yaml_document.h"

namespace mkd::cli {

enum class JobKind { kJob, kJobSet };

struct JobManifestOptions {
  std::string name;  // The Job's name and the pool's job id.
  int ranks = 1;
  int gpus_per_rank = 0;    // 0: the ranks train on CPUs; 1: one GPU each.
  std::string config_file;  // The student config; "": the built-in one.
  std::string queue;        // Kueue LocalQueue; "": none.
  JobKind kind = JobKind::kJob;
  std::string namespace_name;     // "": kubectl's current namespace.
  std::string image;              // "": maskedkd:latest, maskedkd-cuda:latest with GPUs.
  std::string image_pull_policy;  // "": the cluster's default.
  std::string coordinator = "mkd-coordinator:50050";
  std::string storage = "10Gi";
  std::string storage_class;  // "": the cluster's default.
  std::string cpu, memory;    // Requests; "": by device.
  int rendezvous_port = 29500;
  int backoff_limit_per_index = 3;  // Retries of each rank (JobSet: restarts of all).
  bool insecure = false;            // Plaintext to the pool (cpu-dev).
  std::string tls_secret = "maskedkd-student-tls";  // tls.crt, tls.key, ca.crt.
  std::string tls_server_name = "maskedkd.pool";
  std::string pool_secret_file;  // Mints the job's token into a Secret.
  absl::Duration token_ttl = absl::Hours(24 * 30);
  std::vector<std::string> sets;  // More `--set key=value` for mkd-student.
  std::string monitoring_namespace = "monitoring";
};

absl::StatusOr<JobManifestOptions> ParseJobManifestFlags(const std::vector<std::string>& args);
std::string JobManifestUsage();

// The objects of one job, for `config` (the student config's text) and the
// job's token ("": the Secret is the operator's to make). Deterministic:
// the same inputs give the same text.
absl::StatusOr<std::vector<Yaml>> JobManifests(const JobManifestOptions& options,
                                               const std::string& config, const std::string& token);

// Reads the config and the pool secret the options name, mints the token,
// and returns the manifests as one YAML stream, preceded by comments saying
// how to apply them (and how to make the token's Secret, if not minted).
absl::StatusOr<std::string> RunJobManifest(const JobManifestOptions& options);

}  // namespace mkd::cli

#endif  // MKD_CLI_JOB_MANIFEST_H_
