// An epoll-based I/O loop on one thread, and the process-wide pool of them
// that socket transports share.
//
// Example:
//   auto handler = std::make_shared<MyFdHandler>(fd);
//   EventLoop* loop = EventLoopPool::Get().Next();
//   loop->Add(fd, EPOLLIN, handler);           // handler->OnEvents() on the loop thread
//   ...
//   loop->Remove(fd);                          // no OnEvents() after this returns
//
// Busy-polling: a handler may ask the loop to poll it for a while after its
// events (FdHandler::PollWindow) instead of sleeping in epoll_wait at once.
// The loop then calls its PollOnce() (one non-blocking attempt at input) in
// a loop, with an epoll_wait(0) every few attempts for the other fds, until
// input comes (then it handles it and asks again), the handler says stop,
// or the window ends (PollMissed). It polls only while the process-wide spin
// budget allows (transports/common/spin_budget.h), and gives the budget up
// when a synchronous caller of this process wants to poll. Whether polling
// pays off is the handler's to judge (e.g. adaptive_poll.h), when it
// answers PollWindow.
// Hazard: the slot stays taken while a PollOnce runs what it received
// (inline handlers): a handler that blocks there, which it must not do on a
// loop thread anyway, keeps other threads of the process from polling.
//
// Thread-safety: all methods are thread-safe. Handlers run on the loop thread
// only, one event batch at a time; a handler must not block for long (it
// delays every other fd on this loop). A handler may be destroyed on the
// loop thread (when the loop held the last reference): its destructor must
// not wait for a thread that may be inside Remove() of the same fd.
#ifndef LOCUS_TRANSPORTS_SOCKET_EVENT_LOOP_H_
#define LOCUS_TRANSPORTS_SOCKET_EVENT_LOOP_H_

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace locus::internal {

class FdHandler {
 public:
  virtual ~FdHandler() = default;
  // `events` is the epoll event mask (EPOLLIN, EPOLLOUT, EPOLLHUP, EPOLLERR...).
  virtual void OnEvents(uint32_t events) = 0;
  // How long the loop may poll this handler (PollOnce) for more input after
  // it handled its events, rather than sleep; zero: never. Asked on the
  // loop thread right after OnEvents and after a PollOnce that found input.
  virtual absl::Duration PollWindow() { return absl::ZeroDuration(); }
  enum class PollResult {
    kInput,    // input (or its end) came and was handled
    kNothing,  // nothing yet
    kStop,     // stop polling this handler (e.g. someone else reads now)
  };
  // One attempt at input that never waits. Loop thread only, never after
  // Remove() returned, like OnEvents and the two others.
  virtual PollResult PollOnce() { return PollResult::kStop; }
  // The window ended without input.
  virtual void PollMissed() {}
};

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();  // stops the thread; registered handlers are dropped
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Registers `fd` (level-triggered) with interest `events`. The loop keeps
  // `handler` alive while it dispatches to it.
  absl::Status Add(int fd, uint32_t events, std::shared_ptr<FdHandler> handler);
  // Changes the interest set of a registered fd.
  absl::Status Modify(int fd, uint32_t events);
  // Unregisters `fd`. When called off the loop thread, waits until a dispatch
  // to its handler in progress has returned and the loop dropped its
  // reference to the handler. Does not close `fd`. Events already collected
  // for it are dropped, even if the number is registered again meanwhile
  // (each registration has its own generation).
  void Remove(int fd);

  bool InLoopThread() const { return std::this_thread::get_id() == thread_id_; }

 private:
  // The handler a batch asked the loop to poll, and for how long.
  struct PollTarget {
    int fd = -1;
    uint32_t generation = 0;
    absl::Duration window;  // zero: poll nothing
  };

  void Run();
  // Hands `n` collected events to their handlers. Returns false when the
  // loop must stop. Sets `target` to the dispatched handler that asked for
  // the longest poll window (window zero if none asked).
  bool Dispatch(const epoll_event* events, int n, PollTarget* target);
  // Busy-polls `*target` and the other fds (see the file comment) while
  // the budget allows. Returns false when the loop must stop.
  bool Poll(epoll_event* events, int max_events, PollTarget* target);
  // Runs `visit` on the target's handler if it is still registered (under
  // the dispatch protocol: Remove() waits for it); false if it is not.
  template <typename Visit>
  bool WithTarget(const PollTarget& target, Visit visit);

  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd used to stop the loop
  std::thread thread_;
  std::thread::id thread_id_;
  absl::Mutex mu_;
  // A registration: the epoll event's data carries the fd and this
  // generation, so an event collected for an fd that was removed (and
  // whose number a new socket got) is never handed to the new handler.
  struct Registration {
    uint32_t generation;
    std::shared_ptr<FdHandler> handler;
  };
  absl::flat_hash_map<int, Registration> handlers_ ABSL_GUARDED_BY(mu_);
  uint32_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;  // 0: the wake-up eventfd
  // The fd whose handler runs now (-1: none): set under mu_ with the
  // lookup, so that Remove, which erases under mu_ and then reads it, sees
  // any dispatch that found the handler; cleared without the lock (one
  // lock per event instead of two), after the loop's reference to the
  // handler is gone (so the handler is never destroyed on the loop thread
  // after Remove returned, e.g. closing an fd whose number is reused).
  std::atomic<int> dispatching_fd_{-1};
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

// The process-wide loops: one per core (at least one, at most 4), started on
// first use and never destroyed (so they outlive static destructors).
class EventLoopPool {
 public:
  static EventLoopPool& Get();
  // Round-robin choice of a loop for a new connection.
  EventLoop* Next();

 private:
  EventLoopPool();
  std::vector<std::unique_ptr<EventLoop>> loops_;
  std::atomic<size_t> next_{0};
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SOCKET_EVENT_LOOP_H_
