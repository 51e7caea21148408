// A pool of threads running queued tasks in FIFO order. Fixed-size for
// server handlers (ServerOptions::handler_threads > 0); elastic for
// streaming handlers, which block for as long as their stream is open: a
// task that finds no idle thread gets a new one, and threads beyond the
// minimum exit after idling for `idle_timeout` (detached: nothing is left
// to join).
//
// Example:
//   ThreadPool pool(4);                       // fixed
//   ThreadPool streams(0, ThreadPool::kUnbounded, absl::Seconds(10));  // elastic
//   pool.Post([] { Work(); });
//   pool.Stop();   // runs what is queued, then joins
#ifndef LOCUS_RUNTIME_INTERNAL_THREAD_POOL_H_
#define LOCUS_RUNTIME_INTERNAL_THREAD_POOL_H_

#include <deque>
#include <limits>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace locus::internal {

class ThreadPool {
 public:
  static constexpr int kUnbounded = std::numeric_limits<int>::max();

  // Fixed: `threads` threads for the pool's lifetime.
  explicit ThreadPool(int threads);
  // Elastic: between `min_threads` and `max_threads`; tasks queue when all
  // `max_threads` are busy.
  ThreadPool(int min_threads, int max_threads, absl::Duration idle_timeout);
  ~ThreadPool();  // Stop()
  // Thread-safe. After Stop(), the task runs on the calling thread.
  void Post(absl::AnyInvocable<void()> task);
  // Runs queued tasks to completion and joins the threads. Idempotent.
  void Stop();

 private:
  void StartThreadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Joins threads that have left because the pool stops (their handles
  // are kept until then).
  void ReapExited();
  void Work();

  const int min_threads_;
  const int max_threads_;
  const absl::Duration idle_timeout_;
  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::thread::id, std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread::id> exited_ ABSL_GUARDED_BY(mu_);
};

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_THREAD_POOL_H_
