// The stages of one micro-batch's path, from the student's forward to its
// backward, each under one name: the `stage` label of
// mkd_student_stage_seconds, the "stages" of metrics.jsonl and the columns
// of the benchmarks' stage tables. Torch-free.
//
// In path order:
//   student_forward  the student's forward (with its CLS saliency)
//   selection        choosing the teacher's kept patches
//   teacher_forward  in-process teacher: its forward on the kept patches
//   device_to_host   remote teacher: cutting the kept patches and copying
//                    them (in the wire dtype) to host memory
//   encode           building the request (message or shared-memory slot)
//   send             queued for the stream until its write returned
//   server_decode    the teacher server: validation, digest, decode
//   server_queue     waiting in the server's batcher
//   server_forward   the server's batch: assembly, forward, logits back
//   server_encode    the server: encoding the answer
//   transfer         what is left of the round trip: the network, the
//                    kernels and gRPC on both sides, both ways
//   decode           decoding the answer's logits
//   wait             the trainer blocked for the answer
//   host_to_device   the logits to the student's device
//   loss_backward    the micro-batch's loss and backward
// A stage that does not apply (no encode in-process) is absent, not zero.
#ifndef MKD_COMMON_MICRO_BATCH_STAGES_H_
#define MKD_COMMON_MICRO_BATCH_STAGES_H_

#include <array>
#include <vector>

#include "absl/strings/string_view.h"

namespace mkd {

enum class Stage : int {
  kStudentForward,
  kSelection,
  kTeacherForward,
  kDeviceToHost,
  kEncode,
  kSend,
  kServerDecode,
  kServerQueue,
  kServerForward,
  kServerEncode,
  kTransfer,
  kDecode,
  kWait,
  kHostToDevice,
  kLossBackward,
};
inline constexpr int kNumStages = 15;

// The stage's name ("student_forward", ...).
absl::string_view StageName(Stage stage);
// Every stage, in path order.
const std::array<Stage, kNumStages>& AllStages();

// Seconds per stage of one micro-batch (or a sum over several).
// Thread-compatible.
class StageSeconds {
 public:
  bool has(Stage s) const { return seconds_[Index(s)] >= 0; }
  double get(Stage s) const { return has(s) ? seconds_[Index(s)] : 0.0; }
  // Negative durations (clock skew between threads) are kept as 0.
  void Set(Stage s, double seconds) { seconds_[Index(s)] = seconds > 0 ? seconds : 0.0; }
  // Adds to the stage, which becomes present.
  void Add(Stage s, double seconds) { Set(s, get(s) + (seconds > 0 ? seconds : 0.0)); }
  // Adds every stage `other` has.
  void Add(const StageSeconds& other);

 private:
  static int Index(Stage s) { return static_cast<int>(s); }
  std::array<double, kNumStages> seconds_ = Absent();
  static std::array<double, kNumStages> Absent() {
    std::array<double, kNumStages> a;
    a.fill(-1.0);
    return a;
  }
};

// Per stage: the mean over the micro-batches that have it, and how many do.
struct StageMeans {
  StageSeconds mean;
  std::array<int, kNumStages> count{};
};
StageMeans MeanOverMicroBatches(const std::vector<StageSeconds>& micro_batches);

}  // namespace mkd

#endif  // MKD_COMMON_MICRO_BATCH_STAGES_H_
