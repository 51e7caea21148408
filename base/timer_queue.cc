#include "base/timer_queue.h"

#include "absl/time/clock.h"

namespace locus::internal {

TimerQueue& TimerQueue::Get() {
  static TimerQueue* queue = new TimerQueue();
  return *queue;
}

TimerQueue::TimerQueue() : thread_([this] { Run(); }) { thread_.detach(); }

TimerQueue::Id TimerQueue::Schedule(absl::Time when, absl::AnyInvocable<void()> fn) {
  absl::MutexLock lock(&mu_);
  Id id = next_id_++;
  timers_.emplace(std::make_pair(when, id), std::move(fn));
  when_by_id_[id] = when;
  return id;
}

bool TimerQueue::Cancel(Id id) {
  absl::AnyInvocable<void()> cancelled;  // destroyed after the lock: see Run
  absl::MutexLock lock(&mu_);
  auto it = when_by_id_.find(id);
  if (it == when_by_id_.end()) return false;
  auto timer = timers_.find(std::make_pair(it->second, id));
  cancelled = std::move(timer->second);
  timers_.erase(timer);
  when_by_id_.erase(it);
  return true;
}

void TimerQueue::Run() {
  mu_.Lock();
  for (;;) {
    absl::Time next = timers_.empty() ? absl::InfiniteFuture() : timers_.begin()->first.first;
    absl::Time now = absl::Now();
    if (next > now) {
      // Wakes early when an earlier timer is scheduled (the condition sees a
      // new first element).
      auto earlier_or_due = [this, next]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return !timers_.empty() && timers_.begin()->first.first < next;
      };
      mu_.AwaitWithDeadline(absl::Condition(&earlier_or_due), next);
      continue;
    }
    auto first = timers_.begin();
    absl::AnyInvocable<void()> fn = std::move(first->second);
    when_by_id_.erase(first->first.second);
    timers_.erase(first);
    mu_.Unlock();
    fn();
    // What it holds goes now, without the lock: releasing the last
    // reference to an object may schedule or cancel timers.
    fn = nullptr;
    mu_.Lock();
  }
}

}  // namespace locus::internal
