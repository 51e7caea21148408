// The life of one connection as one value (as Cap'n Proto holds a
// connection's state as OneOf<Connected, Disconnected>): every question the
// RPC core asks about it ("may a call start?", "did the handshake settle?",
// "why did it close?") is answered from here, and every change is one of the
// transitions below, which only ever move forward:
//
//   kHandshaking ──HandshakeSucceeded──> kOpen ──SendFailed──> kBroken
//        │                                 │                      │
//        └──HandshakeFailed / PeerGoingAway┴──PeerGoingAway──> kDraining
//   any ──Closed──> kClosed (terminal)
//
// Thread-safety: the transitions and status() run under the owner's mutex
// (ConnectionCore::mu_), which also guards the call tables, so that a phase
// checked there cannot change before a call is recorded. phase(),
// handshake_succeeded() and the cancellation flag are atomics, readable from
// any thread without it.
//
// Example:
//   ConnectionState state;                       // kHandshaking
//   state.HandshakeSucceeded();                  // kOpen: calls may start
//   state.SendFailed();                          // kBroken: not usable()
//   state.Closed(absl::UnavailableError("eof"));
//   bool ok = state.handshake_result().ok() && !state.accepts_calls();  // true
#ifndef LOCUS_RUNTIME_INTERNAL_CONNECTION_STATE_H_
#define LOCUS_RUNTIME_INTERNAL_CONNECTION_STATE_H_

#include <atomic>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace locus::internal {

class ConnectionState {
 public:
  enum class Phase : uint8_t {
    // HELLO / HELLO_ACK not exchanged yet: only handshake frames (and GOAWAY)
    // are valid from the peer.
    kHandshaking,
    // Calls both ways.
    kOpen,
    // A send found the transport gone before its reader reported closure:
    // new calls must pick another connection; calls in flight go on until
    // closure fails them.
    kBroken,
    // The peer sent GOAWAY, or refused or failed the handshake: no new calls
    // either way; calls in progress continue.
    kDraining,
    // The transport reported closure (OnClosed): every call has failed or
    // will fail with status().
    kClosed,
  };

  // --- Any thread, no lock ---
  Phase phase() const { return phase_.load(std::memory_order_acquire); }
  // Whether a new call may pick this connection.
  bool usable() const { return phase() <= Phase::kOpen; }
  // Whether the handshake has succeeded or failed (or the connection closed).
  bool handshake_settled() const { return phase() != Phase::kHandshaking; }
  // Whether the handshake succeeded (also after a later closure): only then
  // are frames other than the handshake's valid from the peer.
  bool handshake_succeeded() const { return handshake_succeeded_.load(std::memory_order_acquire); }
  // The cancellation flag of handlers that run inline on the connection's
  // reader, which cannot read a CANCEL while they run: set once this side
  // begins closing (BeginClosing) or the connection is closed. Lives as long
  // as this object.
  std::atomic<bool>& inline_handlers_cancelled() { return closing_; }
  void BeginClosing() { closing_.store(true, std::memory_order_release); }

  // --- Under the owner's mutex ---
  // Whether calls may be started or accepted (not draining or closed).
  bool accepts_calls() const {
    const Phase now = phase();
    return now != Phase::kDraining && now != Phase::kClosed;
  }
  // Once handshake_settled(): OK if the handshake succeeded (also after a
  // later closure), its failure if it failed, UNAVAILABLE if the connection
  // closed first.
  absl::Status handshake_result() const {
    if (!handshake_error_.ok()) return handshake_error_;
    if (handshake_succeeded()) return absl::OkStatus();
    return absl::UnavailableError(
        absl::StrCat("connection closed during handshake: ", close_reason_.message()));
  }
  // Why the connection closed (OK while open).
  const absl::Status& close_reason() const { return close_reason_; }

  // kHandshaking -> kOpen.
  void HandshakeSucceeded() {
    if (phase() != Phase::kHandshaking) return;
    handshake_succeeded_.store(true, std::memory_order_release);
    Advance(Phase::kOpen);
  }
  // kHandshaking -> kDraining, with `error` (not OK) as the handshake's result.
  void HandshakeFailed(absl::Status error) {
    if (phase() != Phase::kHandshaking) return;
    handshake_error_ = std::move(error);
    Advance(Phase::kDraining);
  }
  // kOpen -> kBroken; no change in any other phase.
  void SendFailed() {
    if (phase() == Phase::kOpen) Advance(Phase::kBroken);
  }
  // The peer sent GOAWAY with `reason`: kOpen or kBroken -> kDraining; during
  // the handshake, the handshake fails with `reason` (UNAVAILABLE if OK).
  void PeerGoingAway(const absl::Status& reason) {
    switch (phase()) {
      case Phase::kHandshaking:
        HandshakeFailed(reason.ok() ? absl::UnavailableError("peer refused the connection") : reason);
        return;
      case Phase::kOpen:
      case Phase::kBroken:
        Advance(Phase::kDraining);
        return;
      case Phase::kDraining:
      case Phase::kClosed:
        return;
    }
  }
  // Any phase -> kClosed; the first reason is kept. Also sets the inline
  // handlers' cancellation flag.
  void Closed(const absl::Status& reason) {
    BeginClosing();
    if (phase() == Phase::kClosed) return;
    close_reason_ = reason;
    Advance(Phase::kClosed);
  }

 private:
  void Advance(Phase to) { phase_.store(to, std::memory_order_release); }

  std::atomic<Phase> phase_{Phase::kHandshaking};
  std::atomic<bool> closing_{false};
  std::atomic<bool> handshake_succeeded_{false};
  absl::Status handshake_error_;
  absl::Status close_reason_;
};

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_CONNECTION_STATE_H_
