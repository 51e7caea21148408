// ConnectionState: the life of a connection as one value, and its
// transitions (which only move forward).
#include "internal/connection_state.h"

#include "gtest/gtest.h"

namespace locus::internal {
namespace {

using Phase = ConnectionState::Phase;

TEST(ConnectionStateTest, StartsHandshakingAndUsable) {
  ConnectionState state;
  EXPECT_EQ(state.phase(), Phase::kHandshaking);
  EXPECT_TRUE(state.usable());
  EXPECT_TRUE(state.accepts_calls());
  EXPECT_FALSE(state.handshake_settled());
  EXPECT_FALSE(state.inline_handlers_cancelled().load());
}

TEST(ConnectionStateTest, HandshakeSuccessSurvivesLaterClosure) {
  ConnectionState state;
  state.HandshakeSucceeded();
  EXPECT_EQ(state.phase(), Phase::kOpen);
  state.Closed(absl::UnavailableError("eof"));
  EXPECT_EQ(state.phase(), Phase::kClosed);
  EXPECT_TRUE(state.handshake_result().ok());
  EXPECT_FALSE(state.accepts_calls());
  EXPECT_FALSE(state.usable());
}

TEST(ConnectionStateTest, FailedHandshakeDrainsAndKeepsItsErrorAfterClosure) {
  ConnectionState state;
  state.HandshakeFailed(absl::FailedPreconditionError("version"));
  EXPECT_EQ(state.phase(), Phase::kDraining);
  EXPECT_TRUE(state.handshake_settled());
  EXPECT_FALSE(state.accepts_calls());
  state.Closed(absl::UnavailableError("eof"));
  EXPECT_EQ(state.handshake_result().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ConnectionStateTest, GoAwayDuringHandshakeFailsIt) {
  ConnectionState state;
  state.PeerGoingAway(absl::OkStatus());
  EXPECT_EQ(state.phase(), Phase::kDraining);
  EXPECT_EQ(state.handshake_result().code(), absl::StatusCode::kUnavailable);
  ConnectionState denied;
  denied.PeerGoingAway(absl::PermissionDeniedError("uid"));
  EXPECT_EQ(denied.handshake_result().code(), absl::StatusCode::kPermissionDenied);
}

TEST(ConnectionStateTest, ClosureBeforeTheHandshakeIsUnavailable) {
  ConnectionState state;
  state.Closed(absl::InternalError("reset"));
  EXPECT_TRUE(state.handshake_settled());
  EXPECT_EQ(state.handshake_result().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(state.close_reason().code(), absl::StatusCode::kInternal);
}

TEST(ConnectionStateTest, BrokenStillAcceptsCallsButIsNotUsable) {
  ConnectionState state;
  state.SendFailed();  // only from kOpen
  EXPECT_EQ(state.phase(), Phase::kHandshaking);
  state.HandshakeSucceeded();
  state.SendFailed();
  EXPECT_EQ(state.phase(), Phase::kBroken);
  EXPECT_FALSE(state.usable());
  EXPECT_TRUE(state.accepts_calls());
  state.PeerGoingAway(absl::UnavailableError("bye"));
  EXPECT_EQ(state.phase(), Phase::kDraining);
  state.SendFailed();
  EXPECT_EQ(state.phase(), Phase::kDraining);
}

TEST(ConnectionStateTest, ClosedIsTerminalAndKeepsTheFirstReason) {
  ConnectionState state;
  state.HandshakeSucceeded();
  state.Closed(absl::UnavailableError("first"));
  state.Closed(absl::InternalError("second"));
  state.PeerGoingAway(absl::UnavailableError("late"));
  state.HandshakeSucceeded();
  EXPECT_EQ(state.phase(), Phase::kClosed);
  EXPECT_EQ(state.close_reason().message(), "first");
  EXPECT_TRUE(state.inline_handlers_cancelled().load());
}

TEST(ConnectionStateTest, BeginClosingCancelsInlineHandlersBeforeClosure) {
  ConnectionState state;
  state.HandshakeSucceeded();
  state.BeginClosing();
  EXPECT_TRUE(state.inline_handlers_cancelled().load());
  EXPECT_EQ(state.phase(), Phase::kOpen);
}

}  // namespace
}  // namespace locus::internal
