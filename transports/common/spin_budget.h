// The process-wide budget of threads allowed to busy-poll at once (shm ring
// readers, socket readers, callers waiting for a reply): the cores
// this process may use minus one (at least one; none on a one-core machine).
// On a machine where every core is taken by a poller, any further runnable
// thread preempts one (costing milliseconds), and a poller waiting for a peer
// that cannot run is pure loss; so polling is a privilege, granted while the
// budget lasts, and synchronous callers get priority over reader threads.
//
// Example:
//   if (SpinBudget::Get().TryAcquire()) { poll...; SpinBudget::Get().Release(); }
#ifndef LOCUS_TRANSPORTS_COMMON_SPIN_BUDGET_H_
#define LOCUS_TRANSPORTS_COMMON_SPIN_BUDGET_H_

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <thread>

namespace locus::internal {

// A CPU hint inside spin loops.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class SpinBudget {
 public:
  static SpinBudget& Get() {
    static SpinBudget budget;
    return budget;
  }
  // Re-entrant per thread: a thread that holds a slot (e.g. an I/O thread
  // polling, which runs an inline handler that makes a synchronous call)
  // gets it again at once; it is still one thread spinning. So Release()
  // belongs on the thread that acquired: a thread holding a slot of its own
  // that released another's would give up its own count instead.
  bool TryAcquire() {
    if (held_by_this_thread_ > 0) {
      ++held_by_this_thread_;
      return true;
    }
    int current = in_use_.load(std::memory_order_relaxed);
    while (current < limit_) {
      if (in_use_.compare_exchange_weak(current, current + 1, std::memory_order_acq_rel)) {
        held_by_this_thread_ = 1;
        return true;
      }
    }
    return false;
  }
  void Release() {
    if (held_by_this_thread_ > 1) {
      --held_by_this_thread_;
      return;
    }
    held_by_this_thread_ = 0;
    in_use_.fetch_sub(1, std::memory_order_acq_rel);
  }
  // Callers that want to poll announce it; background pollers yield to them.
  void AnnounceCaller() { callers_waiting_.fetch_add(1, std::memory_order_acq_rel); }
  void WithdrawCaller() { callers_waiting_.fetch_sub(1, std::memory_order_acq_rel); }
  bool CallerWaiting() const { return callers_waiting_.load(std::memory_order_relaxed) > 0; }
  int limit() const { return limit_; }

 private:
  SpinBudget() {
    // Polling only pays if the peer can run meanwhile, i.e. the machine has
    // another core. Within this process, at most (cores it may run on - 1)
    // pollers, but at least one: a process pinned to one core still wants
    // its caller to poll for a peer pinned elsewhere.
    unsigned machine = std::thread::hardware_concurrency();
    cpu_set_t set;
    int mine = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : static_cast<int>(machine);
    limit_ = machine > 1 ? std::max(1, mine - 1) : 0;
  }
  int limit_;
  std::atomic<int> in_use_{0};
  static inline thread_local int held_by_this_thread_ = 0;
  std::atomic<int> callers_waiting_{0};
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_COMMON_SPIN_BUDGET_H_
