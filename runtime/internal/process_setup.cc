#include "internal/process_setup.h"

#include <cstdlib>
#include <cstring>

#include "absl/synchronization/mutex.h"

namespace locus::internal {

void EnsureProcessSetup() {
  static const bool done = [] {
#ifdef NDEBUG
    const char* keep = std::getenv("LOCUS_ABSL_DEADLOCK_DETECTION");
    if (keep == nullptr || std::strcmp(keep, "1") != 0) {
      absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
    }
#endif
    return true;
  }();
  (void)done;
}

}  // namespace locus::internal
