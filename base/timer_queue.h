// A process-wide timer thread: deadlines of asynchronous calls, handshake
// timeouts, the transports' stall checks and UDP liveness probes.
//
// Example:
//   TimerQueue::Id id = TimerQueue::Get().Schedule(deadline, [] { Expire(); });
//   ...
//   TimerQueue::Get().Cancel(id);   // true if it had not run yet
//
// Thread-safety: thread-safe. Callbacks run on the timer thread, one at a
// time; they must be short and must not call Cancel() on their own id. A
// callback (run or cancelled) is destroyed without the queue's lock held,
// so what it captures may schedule or cancel timers when released.
#ifndef LOCUS_BASE_TIMER_QUEUE_H_
#define LOCUS_BASE_TIMER_QUEUE_H_

#include <cstdint>
#include <map>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace locus::internal {

class TimerQueue {
 public:
  using Id = uint64_t;  // 0 is never a valid id

  // Never destroyed (outlives static destructors).
  static TimerQueue& Get();

  Id Schedule(absl::Time when, absl::AnyInvocable<void()> fn);
  // Returns true if the timer was pending and will not run.
  bool Cancel(Id id);

 private:
  TimerQueue();
  void Run();

  absl::Mutex mu_;
  std::map<std::pair<absl::Time, Id>, absl::AnyInvocable<void()>> timers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Id, absl::Time> when_by_id_ ABSL_GUARDED_BY(mu_);
  Id next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::thread thread_;
};

}  // namespace locus::internal

#endif  // LOCUS_BASE_TIMER_QUEUE_H_
