#include "common/micro_batch_stages.h"

namespace mkd {

absl::string_view StageName(Stage stage) {
  switch (stage) {
    case Stage::kStudentForward:
      return "student_forward";
    case Stage::kSelection:
      return "selection";
    case Stage::kTeacherForward:
      return "teacher_forward";
    case Stage::kDeviceToHost:
      return "device_to_host";
    case Stage::kEncode:
      return "encode";
    case Stage::kSend:
      return "send";
    case Stage::kServerDecode:
      return "server_decode";
    case Stage::kServerQueue:
      return "server_queue";
    case Stage::kServerForward:
      return "server_forward";
    case Stage::kServerEncode:
      return "server_encode";
    case Stage::kTransfer:
      return "transfer";
    case Stage::kDecode:
      return "decode";
    case Stage::kWait:
      return "wait";
    case Stage::kHostToDevice:
      return "host_to_device";
    case Stage::kLossBackward:
      return "loss_backward";
  }
  return "unknown";
}

const std::array<Stage, kNumStages>& AllStages() {
  static const std::array<Stage, kNumStages> all = [] {
    std::array<Stage, kNumStages> a;
    for (int i = 0; i < kNumStages; ++i) a[i] = static_cast<Stage>(i);
    return a;
  }();
  return all;
}

void StageSeconds::Add(const StageSeconds& other) {
  for (Stage s : AllStages()) {
    if (other.has(s)) Add(s, other.get(s));
  }
}

StageMeans MeanOverMicroBatches(const std::vector<StageSeconds>& micro_batches) {
  StageMeans m;
  StageSeconds sum;
  for (const StageSeconds& mb : micro_batches) {
    sum.Add(mb);
    for (Stage s : AllStages()) m.count[static_cast<int>(s)] += mb.has(s) ? 1 : 0;
  }
  for (Stage s : AllStages()) {
    const int n = m.count[static_cast<int>(s)];
    if (n > 0) m.mean.Set(s, sum.get(s) / n);
  }
  return m;
}

}  // namespace mkd
