#include "transports/socket/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/base/log_severity.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "transports/common/spin_budget.h"

namespace locus::internal {
namespace {

// What an epoll event carries: the fd and its registration's generation.
uint64_t EventKey(int fd, uint32_t generation) {
  return (uint64_t{generation} << 32) | static_cast<uint32_t>(fd);
}
int KeyFd(uint64_t key) { return static_cast<int>(static_cast<uint32_t>(key)); }
uint32_t KeyGeneration(uint64_t key) { return static_cast<uint32_t>(key >> 32); }

}  // namespace

EventLoop::EventLoop() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    LOCUS_LOG(FATAL) << "cannot create epoll/eventfd: " << std::strerror(errno);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = EventKey(wake_fd_, 0);
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  thread_ = std::thread([this] { Run(); });
  thread_id_ = thread_.get_id();
}

EventLoop::~EventLoop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  thread_.join();
  close(epoll_fd_);
  close(wake_fd_);
}

absl::Status EventLoop::Add(int fd, uint32_t events, std::shared_ptr<FdHandler> handler) {
  uint32_t generation;
  {
    absl::MutexLock lock(&mu_);
    generation = next_generation_++;
    if (next_generation_ == 0) next_generation_ = 1;
    handlers_[fd] = Registration{generation, std::move(handler)};
  }
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = EventKey(fd, generation);
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int err = errno;
    absl::MutexLock lock(&mu_);
    handlers_.erase(fd);
    return absl::InternalError(absl::StrCat("epoll_ctl(ADD): ", std::strerror(err)));
  }
  return absl::OkStatus();
}

absl::Status EventLoop::Modify(int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  // Under mu_, so that the generation stamped is the registration's even
  // if the fd is removed and its number registered again meanwhile.
  absl::MutexLock lock(&mu_);
  auto it = handlers_.find(fd);
  if (it == handlers_.end()) return absl::NotFoundError(absl::StrCat("fd ", fd, " is not registered"));
  ev.data.u64 = EventKey(fd, it->second.generation);
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) != 0) {
    return absl::InternalError(absl::StrCat("epoll_ctl(MOD): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

void EventLoop::Remove(int fd) {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  std::shared_ptr<FdHandler> doomed;  // released outside the lock
  {
    absl::MutexLock lock(&mu_);
    auto it = handlers_.find(fd);
    if (it != handlers_.end()) {
      doomed = std::move(it->second.handler);
      handlers_.erase(it);
    }
  }
  if (InLoopThread()) return;
  // A dispatch that found the handler set dispatching_fd_ under mu_ before
  // the erase above; wait for it to return (rare: only a connection closed
  // from another thread while its event is being handled).
  while (dispatching_fd_.load(std::memory_order_acquire) == fd) {
    absl::SleepFor(absl::Microseconds(20));
  }
}

void EventLoop::Run() {
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  PollTarget target;
  for (;;) {
    int n = epoll_wait(epoll_fd_, events, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      LOCUS_LOG(FATAL) << "epoll_wait: " << std::strerror(errno);
    }
    if (!Dispatch(events, n, &target)) return;
    if (!Poll(events, kMaxEvents, &target)) return;
  }
}

bool EventLoop::Dispatch(const epoll_event* events, int n, PollTarget* target) {
  target->window = absl::ZeroDuration();
  for (int i = 0; i < n; ++i) {
    const uint64_t key = events[i].data.u64;
    const int fd = KeyFd(key);
    if (fd == wake_fd_ && KeyGeneration(key) == 0) {
      absl::MutexLock lock(&mu_);
      if (stopping_) return false;
      continue;
    }
    std::shared_ptr<FdHandler> handler;
    {
      absl::MutexLock lock(&mu_);
      auto it = handlers_.find(fd);
      // Removed after epoll_wait returned (and maybe registered again
      // for a new socket with the same number: not this event's).
      if (it == handlers_.end() || it->second.generation != KeyGeneration(key)) continue;
      handler = it->second.handler;
      dispatching_fd_.store(fd, std::memory_order_relaxed);  // published by mu_
    }
    handler->OnEvents(events[i].events);
    const absl::Duration window = handler->PollWindow();
    if (window > target->window) *target = PollTarget{fd, KeyGeneration(key), window};
    handler.reset();  // before Remove() may return (see dispatching_fd_)
    dispatching_fd_.store(-1, std::memory_order_release);
  }
  return true;
}

template <typename Visit>
bool EventLoop::WithTarget(const PollTarget& target, Visit visit) {
  std::shared_ptr<FdHandler> handler;
  {
    absl::MutexLock lock(&mu_);
    auto it = handlers_.find(target.fd);
    if (it == handlers_.end() || it->second.generation != target.generation) return false;
    handler = it->second.handler;
    dispatching_fd_.store(target.fd, std::memory_order_relaxed);  // published by mu_
  }
  visit(*handler);
  handler.reset();  // before Remove() may return (see dispatching_fd_)
  dispatching_fd_.store(-1, std::memory_order_release);
  return true;
}

bool EventLoop::Poll(epoll_event* events, int max_events, PollTarget* target) {
  // The target's input is tried directly (one system call); the other fds
  // (and the stop request) are looked at with every kDirectTries-th try.
  constexpr uint32_t kDirectTries = 4;
  SpinBudget& budget = SpinBudget::Get();
  while (target->window > absl::ZeroDuration()) {
    if (budget.CallerWaiting() || !budget.TryAcquire()) return true;
    absl::Time until = absl::Now() + target->window;
    bool dispatched = false;  // events of other fds came: poll again for them
    for (uint32_t i = 1;; ++i) {
      if (i % kDirectTries == 0) {
        const int n = epoll_wait(epoll_fd_, events, max_events, 0);
        if (n > 0) {
          budget.Release();
          if (!Dispatch(events, n, target)) return false;
          dispatched = true;
          break;
        }
      } else {
        FdHandler::PollResult polled = FdHandler::PollResult::kStop;
        absl::Duration next_window;
        const bool registered = WithTarget(*target, [&](FdHandler& handler) {
          polled = handler.PollOnce();
          if (polled == FdHandler::PollResult::kInput) next_window = handler.PollWindow();
        });
        if (!registered || polled == FdHandler::PollResult::kStop) break;
        if (polled == FdHandler::PollResult::kInput) {
          if (next_window <= absl::ZeroDuration()) break;
          until = absl::Now() + next_window;  // poll on, budget kept
        }
      }
      if (budget.CallerWaiting()) break;  // yield the core to a synchronous caller
      if (absl::Now() >= until) {
        WithTarget(*target, [](FdHandler& handler) { handler.PollMissed(); });
        break;
      }
    }
    if (!dispatched) {
      budget.Release();
      return true;
    }
  }
  return true;
}

EventLoopPool& EventLoopPool::Get() {
  static EventLoopPool* pool = new EventLoopPool();  // never destroyed, see header
  return *pool;
}

EventLoopPool::EventLoopPool() {
  unsigned cores = std::thread::hardware_concurrency();
  size_t count = std::clamp<size_t>(cores, 1, 4);
  for (size_t i = 0; i < count; ++i) loops_.push_back(std::make_unique<EventLoop>());
}

EventLoop* EventLoopPool::Next() {
  return loops_[next_.fetch_add(1, std::memory_order_relaxed) % loops_.size()].get();
}

}  // namespace locus::internal
