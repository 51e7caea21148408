#include "internal/thread_pool.h"

#include <utility>

namespace locus::internal {

ThreadPool::ThreadPool(int threads) : ThreadPool(threads, threads, absl::InfiniteDuration()) {}

ThreadPool::ThreadPool(int min_threads, int max_threads, absl::Duration idle_timeout)
    : min_threads_(min_threads), max_threads_(max_threads), idle_timeout_(idle_timeout) {
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < min_threads_; ++i) StartThreadLocked();
}

ThreadPool::~ThreadPool() { Stop(); }

void ThreadPool::StartThreadLocked() {
  std::thread thread([this] { Work(); });
  std::thread::id id = thread.get_id();
  threads_.emplace(id, std::move(thread));
}

void ThreadPool::Post(absl::AnyInvocable<void()> task) {
  ReapExited();
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      tasks_.push_back(std::move(task));
      // Every queued task beyond the idle threads gets a thread, up to the maximum.
      if (static_cast<int>(tasks_.size()) > idle_ && static_cast<int>(threads_.size()) < max_threads_) {
        StartThreadLocked();
      }
      return;
    }
  }
  task();
}

void ThreadPool::ReapExited() {
  std::vector<std::thread> done;
  {
    absl::MutexLock lock(&mu_);
    for (std::thread::id id : exited_) {
      auto it = threads_.find(id);
      done.push_back(std::move(it->second));
      threads_.erase(it);
    }
    exited_.clear();
  }
  for (std::thread& t : done) t.join();  // they are returning from Work()
}

void ThreadPool::Stop() {
  absl::flat_hash_map<std::thread::id, std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    auto drained = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return threads_.size() == exited_.size();
    };
    // Threads leave only when the queue is empty; wait for all to leave,
    // then join them (a stopping pool starts no new threads).
    mu_.Await(absl::Condition(&drained));
    threads.swap(threads_);
    exited_.clear();
  }
  for (auto& [id, t] : threads) {
    if (t.joinable()) t.join();
  }
}

void ThreadPool::Work() {
  for (;;) {
    absl::AnyInvocable<void()> task;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !tasks_.empty(); };
      ++idle_;
      const bool woke = mu_.AwaitWithTimeout(absl::Condition(&ready), idle_timeout_);
      --idle_;
      if (tasks_.empty() && stopping_) {
        exited_.push_back(std::this_thread::get_id());  // Stop() joins it
        return;
      }
      if (tasks_.empty() && !woke && static_cast<int>(threads_.size() - exited_.size()) > min_threads_) {
        // Idle: leaves detached, not to be joined by a later Post that may
        // never come (a process-wide pool is never stopped). It touches
        // nothing of the pool after mu_ is released (Stop() may destroy it
        // as soon as it is).
        auto self = threads_.find(std::this_thread::get_id());
        self->second.detach();
        threads_.erase(self);
        return;
      }
      if (tasks_.empty()) continue;  // idle timeout, but needed for the minimum
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace locus::internal
