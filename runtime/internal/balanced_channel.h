// A channel to several servers (locus/balancing.h): one backend per address
// the target resolves to, each a channel of its own as Connect makes for
// one address (MakeAddressChannel: it moves as close as its server lives,
// and reconnects), and a policy that picks the backend of each call.
//
// Example (locus::Connect does this for a target with a comma or "dns:"):
//   absl::StatusOr<std::shared_ptr<Channel>> channel =
//       ConnectBalanced("tcp://a:1,b:2", options, &registry, policy);
//
// Backends: each is idle (not tried yet, or its backoff is over),
// connecting, ready, or failing (until its backoff is over). A backend is
// only ever connected in the background (on the connect pool), each
// attempt bounded by connect_timeout alone: an attempt outlives the call
// that started it. Pick-first calls the ready backend it picked last, else
// the first ready one in the target's order; with none ready it connects
// the first idle one, and the next idle one too once every earlier
// backend has been connecting for kConnectionAttemptDelay (a backend that
// never answers holds calls up that long, not for connect_timeout).
// Round-robin rotates over the ready ones and connects the idle ones. A
// call finding none ready waits for those connecting (or for a resolution
// under way), within its deadline and until its cancellation; with nothing
// left to try it fails UNAVAILABLE at once. A ready backend whose channel
// lost its connection is connecting again (in the background) rather than
// ready.
//
// Failures: a call failing UNAVAILABLE marked not seen (call_not_seen.h)
// marks its backend failing, whether or not it is retried; so does a
// configuration error (FAILED_PRECONDITION, INVALID_ARGUMENT) marked so.
// A call whose deadline ran out while its backend's channel reconnected
// (DEADLINE_EXCEEDED marked not seen) leaves that reconnection to the
// background.
//
// wait_for_ready (CallOptions): a call that finds no backend to try (every
// one failing, or failed this call) does not fail UNAVAILABLE: it forgets
// the backends it tried and waits, as a call waits for a connecting one,
// until the earliest end of a failing backend's backoff (or any change of
// the backends), within its deadline and until its cancellation. Only a
// channel with no backend at all fails at once.
//
// Retries: a unary call that failed UNAVAILABLE and marked not seen moves
// to a backend it has not tried; with BalancingOptions::retry_sent_calls an
// unmarked UNAVAILABLE moves too (the backend is left to its channel's own
// reconnection). Asynchronous calls copy their request for that. A stream
// stays on the backend it opened on; a backend that cannot be connected
// when it opens is skipped. The backend's channel stays alive while a call
// or stream on it runs, even when the backend was dropped (re-resolution)
// or the balanced channel destroyed.
//
// Asynchronous calls never block: StartUnary, and each later attempt, take
// a ready backend or register the call as a waiter, which a change of the
// backends, its deadline (TimerQueue) or its cancellation wakes on the call
// pool. Their completions never run under mu_.
//
// Threading: one mutex (mu_) guards the backends' states and the waiters;
// it is never held while connecting, calling, resolving or destroying a
// backend's channel (no BackendRef, nor anything holding one, is released
// under it). Background work holds the channel weakly: what finishes after
// the channel is gone is dropped (a waiting asynchronous call then
// completes with its last failure, or CANCELLED). Two process-wide elastic
// pools: the connect pool (connection attempts, DNS resolutions: each
// blocks, bounded by connect_timeout or getaddrinfo) and the call pool
// (later attempts of asynchronous calls and their completions: none waits
// for another task), so that no task waits for work queued behind it.
#ifndef LOCUS_RUNTIME_INTERNAL_BALANCED_CHANNEL_H_
#define LOCUS_RUNTIME_INTERNAL_BALANCED_CHANNEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "internal/backoff.h"
#include "internal/target_resolver.h"
#include "internal/transport_selection.h"
#include "locus/balancing.h"
#include "locus/channel.h"

namespace locus::internal {

class BalancedChannel final : public Channel, public std::enable_shared_from_this<BalancedChannel> {
 public:
  // Use ConnectBalanced. `addresses`: the first resolution of `elements`,
  // `resolved` each element's part of it.
  BalancedChannel(std::string target, std::vector<TargetElement> elements,
                  std::vector<std::vector<std::string>> resolved,
                  const std::vector<std::string>& addresses, ChannelOptions options,
                  TransportRegistry* registry, TransportPolicy policy);
  ~BalancedChannel() override;

  absl::Status CallUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                         google::protobuf::MessageLite* response, const CallOptions& options) override;
  void StartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                  google::protobuf::MessageLite* response, const CallOptions& options,
                  absl::AnyInvocable<void(absl::Status) &&> done) override;
  std::unique_ptr<ClientCallStream> OpenStream(const RpcMethod& method,
                                               const google::protobuf::MessageLite* request,
                                               google::protobuf::MessageLite* response,
                                               const CallOptions& options) override;
  std::string transport_name() const override;
  const std::string& target() const override { return target_; }

  // Connects as the policy says, until `deadline`: pick-first the first
  // backend that connects, round-robin every backend at once (returning
  // when each has connected or failed, or at `deadline` if one is ready).
  // UNAVAILABLE naming every failure if none connected.
  absl::Status Start(absl::Time deadline);
  // The channel of a backend that is connected now, picked as for a call
  // (connecting one if needed): what RMI needs of a channel (a connection,
  // the server's bootstrap object).
  absl::StatusOr<std::shared_ptr<Channel>> PickBackend(absl::Time deadline);
  const ChannelOptions& options() const { return options_; }
  // locus::DescribeBackends.
  std::vector<BackendInfo> Describe() const;
  // Resolutions of the target's DNS names finished since the first (tests).
  uint64_t resolutions() const {
    absl::MutexLock lock(&mu_);
    return resolutions_;
  }

 private:
  // One server. Immutable and shared: calls and streams on it hold it.
  struct Backend {
    std::string address;
    std::shared_ptr<Channel> channel;  // MakeAddressChannel
  };
  using BackendRef = std::shared_ptr<const Backend>;
  // Backends a call failed on, skipped by its next attempts.
  using Tried = absl::InlinedVector<BackendRef, 4>;
  struct Slot {
    Slot(BackendRef backend, const ConnectionBackoff& policy) : backend(std::move(backend)), backoff(policy) {}
    BackendRef backend;
    BackendInfo::State state = BackendInfo::State::kIdle;
    absl::Time retry_at;          // kFailing: when it becomes idle again
    absl::Time connecting_since;  // kConnecting: when its attempt started
    ExponentialBackoff backoff;
    absl::Status last_error;
  };
  struct AsyncCall;  // balanced_channel.cc
  using AsyncCallRef = std::shared_ptr<AsyncCall>;
  // What one look at the backends offers an attempt: a backend, a final
  // failure, or neither (wait for a change of the backends, and look again
  // at `recheck` at the latest). `forget_tried`: a wait_for_ready call
  // found nothing outside its tried backends; it clears them and looks
  // again at once.
  struct Choice {
    BackendRef backend;
    absl::Status failure;
    absl::Time recheck = absl::InfiniteFuture();
    bool forget_tried = false;
  };

  // The backend of one attempt, skipping `tried` (see the class comment),
  // waiting until `deadline` or `cancellation`; with `wait_for_ready` also
  // while every backend is failing (see "wait_for_ready" above).
  absl::StatusOr<BackendRef> Pick(absl::Time deadline, const Tried& tried,
                                  const std::optional<Cancellation>& cancellation = std::nullopt,
                                  bool wait_for_ready = false);
  // Pick, then make sure the backend's channel is connected (streams, RMI):
  // a backend that cannot be connected is marked failing and skipped.
  absl::StatusOr<BackendRef> PickConnected(absl::Time deadline, const Tried& tried,
                                           const std::optional<Cancellation>& cancellation = std::nullopt,
                                           bool wait_for_ready = false);
  // `*resolved`: whether this pick asked for a resolution already.
  Choice ChooseLocked(const Tried& tried, bool* resolved, bool wait_for_ready)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether a unary call that ended with `status` after `attempts` attempts
  // goes to another backend.
  bool ShouldRetry(const absl::Status& status, int attempts, const CallOptions& options) const;
  // A call on `backend` ended with `status` (retried or not): see "Failures"
  // above.
  void NoteFailure(const Backend& backend, const absl::Status& status);
  // The next attempt of `call`, or its registration as a waiter. Never
  // blocks.
  void StartAttempt(AsyncCallRef call);
  static void OnAttemptDone(std::weak_ptr<BalancedChannel> weak, AsyncCallRef call, BackendRef backend,
                            absl::Status status);
  // Ends `call` with `status` (its done callback). Not under mu_.
  static void Finish(AsyncCallRef call, absl::Status status);
  // What a call ends with when its channel is gone before it could.
  static absl::Status Abandoned(const AsyncCall& call);
  // Makes `call` own a copy of its request (once).
  static void CopyRequest(AsyncCall& call);
  // Registers `call` as a waiter until a change, `recheck`, its deadline or
  // its cancellation; false if it is cancelled already.
  bool WaitLocked(const AsyncCallRef& call, absl::Time recheck) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes `call` from the waiters (into `*taken`, released outside mu_):
  // whether it was one.
  bool TakeWaiterLocked(const AsyncCall* call, AsyncCallRef* taken) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The backends changed: waiters look again (on the call pool).
  void ChangedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Failing backends whose backoff is over become idle; round-robin starts
  // connecting idle ones; DNS names are resolved again when due.
  void RefreshLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A ready backend not in `tried`, as the policy picks; a ready one whose
  // channel lost its connection is connected again instead.
  BackendRef ChooseReadyLocked(const Tried& tried) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Slot* FindLocked(const Backend& backend) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartConnectingLocked(Slot& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A connection attempt on `backend` ended with `status`: ready or failing.
  void ConnectedLocked(const Backend& backend, const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailedLocked(Slot& slot, const absl::Status& status, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts a DNS resolution in the background unless one runs or (unless
  // `periodic`) one started less than backoff.initial_backoff ago. Whether one runs.
  bool MaybeResolveLocked(absl::Time now, bool periodic) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A resolution's result: keeps the slots of addresses still named, adds
  // idle ones, moves the others into `*dropped` (destroyed outside mu_).
  void ApplyResolutionLocked(const absl::StatusOr<std::vector<std::string>>& addresses,
                             std::vector<Slot>* dropped) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // UNAVAILABLE (marked not seen): no backend left to try, and why.
  absl::Status NoBackendLocked(const Tried& tried) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AnyConnectingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string target_;
  const std::vector<TargetElement> elements_;
  const bool resolves_;  // the target names DNS names
  const ChannelOptions options_;
  TransportRegistry* const registry_;
  const TransportPolicy policy_;
  const ConnectionBackoff backoff_policy_;

  mutable absl::Mutex mu_;
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);  // in the target's order
  // Bumped by every change of a slot's state or of the slots
  // (ChangedLocked): synchronous waiters (Pick, Start) wake on it.
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  // Asynchronous calls waiting for a change (WaitLocked).
  std::vector<AsyncCallRef> waiters_ ABSL_GUARDED_BY(mu_);
  // Round-robin: where the next rotation starts. Pick-first: the slot
  // calls go to while it is ready (-1: none yet).
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  int selected_ ABSL_GUARDED_BY(mu_) = -1;
  // The earliest retry_at of a failing slot (InfiniteFuture: none).
  absl::Time next_retry_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool resolving_ ABSL_GUARDED_BY(mu_) = false;
  // Each element's addresses as last resolved (kept for a name that fails).
  std::vector<std::vector<std::string>> element_addresses_ ABSL_GUARDED_BY(mu_);
  uint64_t resolutions_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_resolution_ ABSL_GUARDED_BY(mu_);  // when the last one started
  absl::Time next_resolution_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool logged_resolution_failure_ ABSL_GUARDED_BY(mu_) = false;
};

// Connects a channel to the servers `target` names (IsBalancedTarget):
// parses and resolves it, then BalancedChannel::Start within
// options.connect_timeout.
absl::StatusOr<std::shared_ptr<Channel>> ConnectBalanced(absl::string_view target,
                                                         const ChannelOptions& options,
                                                         TransportRegistry* registry,
                                                         TransportPolicy policy);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_BALANCED_CHANNEL_H_
