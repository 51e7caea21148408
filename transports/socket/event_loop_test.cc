// EventLoop: registrations are told apart by generation, so an event the
// loop collected for an fd that was removed meanwhile never reaches the
// handler of a new socket that got the same number; a handler that asks to
// be polled after its events is, until it is removed.
//
// Tests use deadlines only as watchdogs against hangs, never to assert speed.
#include "transports/socket/event_loop.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "transports/common/spin_budget.h"
#include "tests/testing/machine_skip.h"

namespace locus::internal {
namespace {

constexpr absl::Duration kWatchdog = absl::Seconds(60);

// Counts its events; optionally blocks in OnEvents until released, then
// reads one byte from `drain_fd` (if set).
class TestHandler final : public FdHandler {
 public:
  explicit TestHandler(bool block = false, int drain_fd = -1) : block_(block), drain_fd_(drain_fd) {}
  void OnEvents(uint32_t) override {
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
    }
    if (block_) {
      absl::MutexLock lock(&mu_);
      auto released = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return released_ >= calls_; };
      mu_.AwaitWithTimeout(absl::Condition(&released), kWatchdog);
    }
    char byte;
    if (drain_fd_ >= 0) (void)!read(drain_fd_, &byte, 1);
  }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  bool WaitForCalls(int n) const {
    absl::MutexLock lock(&mu_);
    auto reached = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return calls_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), kWatchdog);
  }
  void ReleaseOne() {
    absl::MutexLock lock(&mu_);
    ++released_;
  }

 private:
  const bool block_;
  const int drain_fd_;
  mutable absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  int released_ ABSL_GUARDED_BY(mu_) = 0;
};

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    read_end = fds[0];
    write_end = fds[1];
  }
  ~Pipe() {
    if (read_end >= 0) close(read_end);
    if (write_end >= 0) close(write_end);
  }
  void MakeReadable() const { ASSERT_EQ(write(write_end, "x", 1), 1); }
  int read_end = -1;
  int write_end = -1;
};

TEST(EventLoopTest, EventForARemovedFdNeverReachesANewRegistrationOfItsNumber) {
  EventLoop loop;
  // The gate holds the loop inside a dispatch while the test replaces the
  // old registration. It holds two bytes and each dispatch reads one, so it
  // is still readable at the loop's second epoll_wait.
  Pipe gate;
  auto gate_handler = std::make_shared<TestHandler>(/*block=*/true, gate.read_end);
  ASSERT_TRUE(loop.Add(gate.read_end, EPOLLIN, gate_handler).ok());
  Pipe old_pipe;
  auto old_handler = std::make_shared<TestHandler>();
  ASSERT_TRUE(loop.Add(old_pipe.read_end, EPOLLIN, old_handler).ok());

  gate.MakeReadable();
  gate.MakeReadable();
  ASSERT_TRUE(gate_handler->WaitForCalls(1));  // the loop is held in the gate
  old_pipe.MakeReadable();
  // The next epoll_wait collects both: the gate (still readable, back at
  // the end of epoll's ready list) first, then the old fd, whose event
  // waits behind the gate's dispatch.
  gate_handler->ReleaseOne();
  ASSERT_TRUE(gate_handler->WaitForCalls(2));
  ASSERT_EQ(old_handler->calls(), 0) << "the old fd's event came before the gate's";

  // Meanwhile the old fd goes away and a new socket gets its number.
  const int number = old_pipe.read_end;
  loop.Remove(number);
  Pipe new_pipe;  // not readable: its handler has nothing to be told
  ASSERT_EQ(dup2(new_pipe.read_end, number), number);
  auto new_handler = std::make_shared<TestHandler>();
  ASSERT_TRUE(loop.Add(number, EPOLLIN, new_handler).ok());

  // The loop resumes the batch; then a marker proves the batch is done.
  Pipe marker;
  auto marker_handler = std::make_shared<TestHandler>(/*block=*/false, marker.read_end);
  ASSERT_TRUE(loop.Add(marker.read_end, EPOLLIN, marker_handler).ok());
  gate_handler->ReleaseOne();  // the gate is drained now
  marker.MakeReadable();
  ASSERT_TRUE(marker_handler->WaitForCalls(1));
  EXPECT_EQ(new_handler->calls(), 0) << "an event of the removed fd reached the new registration";
  EXPECT_EQ(old_handler->calls(), 0);
  loop.Remove(number);
  loop.Remove(marker.read_end);
  loop.Remove(gate.read_end);
}

TEST(EventLoopTest, RemoveWaitsForADispatchInProgress) {
  EventLoop loop;
  Pipe pipe;
  // Drained once released, so the loop does not dispatch it again.
  auto handler = std::make_shared<TestHandler>(/*block=*/true, pipe.read_end);
  ASSERT_TRUE(loop.Add(pipe.read_end, EPOLLIN, handler).ok());
  pipe.MakeReadable();
  ASSERT_TRUE(handler->WaitForCalls(1));
  std::atomic<bool> removed{false};
  std::thread remover([&] {
    loop.Remove(pipe.read_end);
    removed = true;
  });
  absl::SleepFor(absl::Milliseconds(20));  // room for a wrong Remove to return early
  EXPECT_FALSE(removed.load()) << "Remove returned while the handler still ran";
  handler->ReleaseOne();
  remover.join();
  EXPECT_TRUE(removed.load());
  EXPECT_EQ(handler->calls(), 1);  // nothing after Remove
  // The loop let go of the handler before Remove returned: the test's
  // reference is the last, so the handler dies where its owner decides.
  EXPECT_EQ(handler.use_count(), 1);
}

// Drains its fd on events, then asks to be polled for `window`. Its "input"
// while polled is a counter the test raises (not the fd, which epoll would
// report too): PollOnce takes one unit per call.
class PolledHandler final : public FdHandler {
 public:
  PolledHandler(int drain_fd, absl::Duration window) : drain_fd_(drain_fd), window_(window) {}
  void OnEvents(uint32_t) override {
    char byte;
    while (read(drain_fd_, &byte, 1) == 1) {
    }
    events_.fetch_add(1);
  }
  absl::Duration PollWindow() override { return window_; }
  PollResult PollOnce() override {
    polls_.fetch_add(1);
    int pending = pending_.load();
    while (pending > 0) {
      if (pending_.compare_exchange_weak(pending, pending - 1)) {
        taken_.fetch_add(1);
        return PollResult::kInput;
      }
    }
    return PollResult::kNothing;
  }
  void PollMissed() override { misses_.fetch_add(1); }
  void AddInput() { pending_.fetch_add(1); }
  int events() const { return events_.load(); }
  int polls() const { return polls_.load(); }
  int taken() const { return taken_.load(); }
  int misses() const { return misses_.load(); }

 private:
  const int drain_fd_;
  const absl::Duration window_;
  std::atomic<int> events_{0};
  std::atomic<int> polls_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> taken_{0};
  std::atomic<int> misses_{0};
};

template <typename Condition>
bool WithinWatchdog(Condition condition) {
  const absl::Time until = absl::Now() + kWatchdog;
  while (!condition()) {
    if (absl::Now() >= until) return false;
    absl::SleepFor(absl::Microseconds(100));
  }
  return true;
}

TEST(EventLoopTest, AHandlerThatAsksIsPolledAfterItsEventsUntilRemoved) {
  LOCUS_SKIP_UNLESS_MACHINE(SpinBudget::Get().limit() > 0, "one core: nobody may poll");
  EventLoop loop;
  Pipe pipe;
  // Longer than the test: polling ends only with the removal.
  auto handler = std::make_shared<PolledHandler>(pipe.read_end, absl::Hours(1));
  ASSERT_TRUE(loop.Add(pipe.read_end, EPOLLIN, handler).ok());
  pipe.MakeReadable();
  ASSERT_TRUE(WithinWatchdog([&] { return handler->polls() > 0; })) << "the loop never polled";
  for (int i = 1; i <= 3; ++i) {
    handler->AddInput();
    ASSERT_TRUE(WithinWatchdog([&] { return handler->taken() == i; }));
  }
  EXPECT_EQ(handler->events(), 1) << "input came through polling, not epoll";
  loop.Remove(pipe.read_end);
  const int polls_at_removal = handler->polls();
  absl::SleepFor(absl::Milliseconds(20));  // room for a wrong poll
  EXPECT_EQ(handler->polls(), polls_at_removal) << "polled after Remove returned";
  EXPECT_EQ(handler.use_count(), 1) << "the loop kept a reference after Remove";
}

TEST(EventLoopTest, AWindowThatRunsOutIsReportedAndTheLoopSleepsAgain) {
  LOCUS_SKIP_UNLESS_MACHINE(SpinBudget::Get().limit() > 0, "one core: nobody may poll");
  EventLoop loop;
  Pipe pipe;
  auto handler = std::make_shared<PolledHandler>(pipe.read_end, absl::Milliseconds(1));
  ASSERT_TRUE(loop.Add(pipe.read_end, EPOLLIN, handler).ok());
  pipe.MakeReadable();
  ASSERT_TRUE(WithinWatchdog([&] { return handler->misses() == 1; }));
  // Asleep in epoll_wait now: polled no more, woken by the next event.
  const int polls = handler->polls();
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(handler->polls(), polls);
  pipe.MakeReadable();
  ASSERT_TRUE(WithinWatchdog([&] { return handler->events() == 2 && handler->misses() == 2; }));
  loop.Remove(pipe.read_end);
}

TEST(EventLoopTest, AHandlerThatDoesNotAskIsNeverPolled) {
  EventLoop loop;
  Pipe pipe;
  auto handler = std::make_shared<PolledHandler>(pipe.read_end, absl::ZeroDuration());
  ASSERT_TRUE(loop.Add(pipe.read_end, EPOLLIN, handler).ok());
  pipe.MakeReadable();
  ASSERT_TRUE(WithinWatchdog([&] { return handler->events() == 1; }));
  pipe.MakeReadable();  // a second event: the loop is back in epoll_wait
  ASSERT_TRUE(WithinWatchdog([&] { return handler->events() == 2; }));
  loop.Remove(pipe.read_end);
  EXPECT_EQ(handler->polls(), 0);
}

TEST(EventLoopTest, ModifyOfAnUnregisteredFdIsAnError) {
  EventLoop loop;
  Pipe pipe;
  EXPECT_EQ(loop.Modify(pipe.read_end, EPOLLIN).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace locus::internal
