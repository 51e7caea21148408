// Cancellation's state: registrations, Cancel() running each callback once
// outside its lock, and registrations that go with the calls' state.
#include "locus/cancellation.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace locus {
namespace {

using internal::CancellationRegistration;

TEST(Cancellation, CancelRunsEachRegisteredCallbackOnceAndCopiesShareTheState) {
  Cancellation cancel;
  Cancellation copy = cancel;
  int runs = 0;
  const uint64_t first = cancel.state()->Register([&runs]() { ++runs; });
  const uint64_t second = copy.state()->Register([&runs]() { ++runs; });
  EXPECT_NE(first, 0u);
  EXPECT_NE(second, first);
  EXPECT_EQ(cancel.state()->registered(), 2u);
  copy.Cancel();
  EXPECT_TRUE(cancel.cancelled());
  EXPECT_EQ(runs, 2);
  cancel.Cancel();  // idempotent
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(cancel.state()->registered(), 0u);
}

TEST(Cancellation, RegisteringAfterCancelIsRefusedAndDropsTheCallback) {
  Cancellation cancel;
  cancel.Cancel();
  bool ran = false;
  EXPECT_EQ(cancel.state()->Register([&ran]() { ran = true; }), 0u);
  EXPECT_FALSE(ran);
  EXPECT_EQ(cancel.state()->registered(), 0u);
}

TEST(Cancellation, ARegistrationIsDroppedWithItsOwnerAndThenNeverRuns) {
  Cancellation cancel;
  bool ran = false;
  {
    CancellationRegistration registration(cancel.state(),
                                          cancel.state()->Register([&ran]() { ran = true; }));
    EXPECT_EQ(cancel.state()->registered(), 1u);
    CancellationRegistration moved = std::move(registration);  // still one registration
    EXPECT_EQ(cancel.state()->registered(), 1u);
  }
  EXPECT_EQ(cancel.state()->registered(), 0u);
  cancel.Cancel();
  EXPECT_FALSE(ran);
}

TEST(Cancellation, ACallbackMayTouchTheStateItRunsFrom) {
  // Callbacks run outside the lock: one that asks the state (or drops a
  // registration) does not deadlock.
  Cancellation cancel;
  bool saw_cancelled = false;
  uint64_t other = cancel.state()->Register([] {});
  cancel.state()->Register([&] {
    saw_cancelled = cancel.cancelled();
    cancel.state()->Unregister(other);
  });
  cancel.Cancel();
  EXPECT_TRUE(saw_cancelled);
}

TEST(Cancellation, ConcurrentRegistrationsAndCancelRunEachAcceptedCallbackExactlyOnce) {
  Cancellation cancel;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::atomic<int> accepted{0};
  std::atomic<int> ran{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        if (cancel.state()->Register([&ran]() { ran.fetch_add(1); }) != 0) accepted.fetch_add(1);
      }
    });
  }
  std::thread canceller([&] { cancel.Cancel(); });
  for (std::thread& t : threads) t.join();
  canceller.join();
  EXPECT_EQ(ran.load(), accepted.load());
  EXPECT_EQ(cancel.state()->registered(), 0u);
}

}  // namespace
}  // namespace locus
