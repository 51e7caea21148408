// A fixed-size pool of threads running queued tasks in FIFO order; used for
// server handlers when ServerOptions::handler_threads > 0.
//
// Example:
//   ThreadPool pool(4);
//   pool.Post([] { Work(); });
//   pool.Stop();   // runs what is queued, then joins
#ifndef LOCUS_RUNTIME_INTERNAL_THREAD_POOL_H_
#define LOCUS_RUNTIME_INTERNAL_THREAD_POOL_H_

#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace locus::internal {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();  // Stop()
  // Thread-safe. After Stop(), the task runs on the calling thread.
  void Post(absl::AnyInvocable<void()> task);
  // Runs queued tasks to completion and joins the threads. Idempotent.
  void Stop();

 private:
  void Work();

  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_THREAD_POOL_H_
