// CloseState: the first Close's reason wins, OnClosed is taken exactly once.
#include "transports/common/close_state.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace locus::internal {
namespace {

TEST(CloseState, OpenUntilTheFirstClose) {
  CloseState state;
  EXPECT_FALSE(state.closed());
  EXPECT_EQ(state.Reason().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(state.ReasonOr(absl::InternalError("fallback")).message(), "fallback");
}

TEST(CloseState, TheFirstReasonWins) {
  CloseState state;
  EXPECT_TRUE(state.Close(absl::CancelledError("first")));
  EXPECT_FALSE(state.Close(absl::InternalError("second")));
  EXPECT_TRUE(state.closed());
  EXPECT_EQ(state.Reason(), absl::CancelledError("first"));
  EXPECT_EQ(state.ReasonOr(absl::InternalError("fallback")), absl::CancelledError("first"));
}

TEST(CloseState, OneCloseAndOneOnClosedAcrossThreads) {
  CloseState state;
  std::atomic<int> closers{0};
  std::atomic<int> deliverers{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      if (state.Close(absl::UnavailableError("gone"))) closers.fetch_add(1);
      if (state.TakeOnClosedDelivery()) deliverers.fetch_add(1);
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(closers.load(), 1);
  EXPECT_EQ(deliverers.load(), 1);
  EXPECT_TRUE(state.on_closed_taken());
}

}  // namespace
}  // namespace locus::internal
