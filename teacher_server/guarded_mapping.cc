#include "teacher_server/guarded_mapping.h"

#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace mkd::teacher {
namespace {

// The guarded mappings, read by the signal handler: lock-free, fixed-size.
// `start`: 0 free, 1 held but not guarding (being filled or emptied), else
// the mapping's address, set after its `length`.
struct Slot {
  std::atomic<uintptr_t> start{0};
  std::atomic<size_t> length{0};
  std::atomic<bool> broken{false};
};
Slot slots[kMaxGuardedMappings];
struct sigaction previous_action;
std::once_flag installed;

void OnBusError(int sig, siginfo_t* info, void* context) {
  const auto address = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& s : slots) {
    const uintptr_t start = s.start.load(std::memory_order_acquire);
    if (start <= 1 || address < start) continue;
    const size_t length = s.length.load(std::memory_order_acquire);
    if (address - start >= length) continue;
    // mmap is a plain system call: safe here. The faulting access then
    // completes on zero pages.
    if (mmap(reinterpret_cast<void*>(start), length, PROT_READ | PROT_WRITE,
             MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) {
      s.broken.store(true, std::memory_order_release);
      return;
    }
    break;  // Could not repair it: not ours to survive.
  }
  // Not a guarded mapping: whatever handled SIGBUS before us, or the
  // default action (returning re-runs the access, which faults again).
  if ((previous_action.sa_flags & SA_SIGINFO) != 0 && previous_action.sa_sigaction != nullptr) {
    previous_action.sa_sigaction(sig, info, context);
    return;
  }
  if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
    previous_action.sa_handler(sig);
    return;
  }
  signal(SIGBUS, SIG_DFL);
}

void InstallHandler() {
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_sigaction = OnBusError;
  action.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  sigaction(SIGBUS, &action, &previous_action);
}

}  // namespace

absl::StatusOr<std::unique_ptr<GuardedMapping>> GuardedMapping::Map(int fd, int64_t bytes) {
  std::call_once(installed, InstallHandler);
  void* data = mmap(nullptr, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map the shared-memory region: ", std::strerror(errno)));
  }
  for (int i = 0; i < kMaxGuardedMappings; ++i) {
    Slot& s = slots[i];
    uintptr_t free_slot = 0;
    // Held (1) while its length is written: no other thread takes it, and
    // the handler does not look at it yet.
    if (!s.start.compare_exchange_strong(free_slot, 1, std::memory_order_acq_rel)) continue;
    s.broken.store(false, std::memory_order_relaxed);
    s.length.store(static_cast<size_t>(bytes), std::memory_order_release);
    s.start.store(reinterpret_cast<uintptr_t>(data), std::memory_order_release);
    return std::unique_ptr<GuardedMapping>(new GuardedMapping(static_cast<char*>(data), bytes, i));
  }
  munmap(data, static_cast<size_t>(bytes));
  return absl::ResourceExhaustedError(absl::StrCat(
      "more than ", kMaxGuardedMappings, " shared-memory regions are open on this teacher"));
}

GuardedMapping::~GuardedMapping() {
  Slot& s = slots[slot_];
  // Out of the handler's sight first: once unmapped, the addresses may be
  // reused by any other mapping.
  s.start.store(1, std::memory_order_release);
  s.length.store(0, std::memory_order_release);
  munmap(data_, static_cast<size_t>(size_));
  s.start.store(0, std::memory_order_release);
}

bool GuardedMapping::broken() const { return slots[slot_].broken.load(std::memory_order_acquire); }

}  // namespace mkd::teacher
