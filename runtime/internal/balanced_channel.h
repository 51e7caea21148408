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
// connecting, ready, or failing (until its backoff is over). Pick-first
// calls the ready backend it picked last, else the first ready one in the
// target's order, else connects the first idle one on the calling thread.
// Round-robin rotates over the ready ones and connects the idle ones in
// the background. A call finding none ready waits for those connecting (or
// for a resolution under way), within its deadline; with nothing left to
// try it fails UNAVAILABLE at once.
//
// Retries: a unary call that failed UNAVAILABLE and marked not seen
// (call_not_seen.h) moves to a backend it has not tried, and the backend
// that failed it is marked failing; with BalancingOptions::retry_sent_calls
// an unmarked UNAVAILABLE moves too (the backend is left to its channel's
// own reconnection). Asynchronous calls copy their request for that, and
// make later attempts on the balancer's pool. A stream stays on the
// backend it opened on; a backend that cannot be connected when it opens is
// skipped. The backend's channel stays alive while a call or stream on it
// runs, even when the backend was dropped (re-resolution) or the balanced
// channel destroyed.
//
// Threading: one mutex (mu_) guards the backends' states; it is never held
// while connecting, calling, resolving or destroying a backend's channel.
// Background work (round-robin connections, DNS resolution, later attempts
// of asynchronous calls) runs on a process-wide elastic pool and holds the
// channel weakly: what finishes after the channel is gone is dropped (an
// asynchronous call then completes with its last failure).
#ifndef LOCUS_RUNTIME_INTERNAL_BALANCED_CHANNEL_H_
#define LOCUS_RUNTIME_INTERNAL_BALANCED_CHANNEL_H_

#include <cstdint>
#include <memory>
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
  // Use ConnectBalanced. `addresses`: the first resolution of `elements`.
  BalancedChannel(std::string target, std::vector<TargetElement> elements,
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
  // locus::DescribeBackends.
  std::vector<BackendInfo> Describe() const;

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
    absl::Time retry_at;  // kFailing: when it becomes idle again
    ExponentialBackoff backoff;
    absl::Status last_error;
  };
  struct AsyncCall;  // balanced_channel.cc

  // The backend of one attempt, skipping `tried` (see the class comment).
  absl::StatusOr<BackendRef> Pick(absl::Time deadline, const Tried& tried);
  // Pick, then make sure the backend's channel is connected (streams, RMI):
  // a backend that cannot be connected is marked failing and skipped.
  absl::StatusOr<BackendRef> PickConnected(absl::Time deadline, const Tried& tried);
  // Whether a unary call that ended with `status` after `attempts` attempts
  // goes to another backend.
  bool ShouldRetry(const absl::Status& status, int attempts, const CallOptions& options) const;
  // A call on `backend` failed with `status`, retried elsewhere: a failure
  // no server saw marks the backend failing.
  void NoteFailure(const Backend& backend, const absl::Status& status);
  // wait_for_ready, when Pick found no backend (`none`): when to look
  // again (the earliest end of a failing backend's backoff), or the call's
  // outcome: `none` if no backend will come back by itself,
  // DEADLINE_EXCEEDED if none comes back before the deadline.
  absl::StatusOr<absl::Time> NextBackendChance(const absl::Status& none, const CallOptions& options);
  void StartAttempt(std::shared_ptr<AsyncCall> call);
  static void OnAttemptDone(std::weak_ptr<BalancedChannel> weak, std::shared_ptr<AsyncCall> call,
                            BackendRef backend, absl::Status status);
  // StartAttempt again on the balancer's pool at `when` (a timer until
  // then), unless the channel is gone or the call cancelled by then.
  static void StartAttemptAt(std::weak_ptr<BalancedChannel> weak, std::shared_ptr<AsyncCall> call,
                             absl::Time when);

  // Failing backends whose backoff is over become idle; round-robin starts
  // connecting idle ones; DNS names are resolved again when due.
  void RefreshLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  BackendRef ChooseReadyLocked(const Tried& tried) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Slot* FindLocked(const Backend& backend) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The first slot in `state` not in `tried`, in the target's order.
  Slot* FirstLocked(BackendInfo::State state, const Tried& tried) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartConnectingLocked(Slot& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A connection attempt on `backend` ended with `status`: ready, failing,
  // or idle again if only the deadline of the call connecting it ran out.
  void ConnectedLocked(const Backend& backend, const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailedLocked(Slot& slot, const absl::Status& status, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts a DNS resolution in the background unless one runs or (unless
  // `periodic`) one started less than initial_backoff ago. Whether one runs.
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
  // Bumped by every change of a slot's state or of the slots: waiters
  // (Pick, Start) wake on it.
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  // Round-robin: where the next rotation starts. Pick-first: the slot
  // calls go to while it is ready (-1: none yet).
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  int selected_ ABSL_GUARDED_BY(mu_) = -1;
  // The earliest retry_at of a failing slot (InfiniteFuture: none).
  absl::Time next_retry_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool resolving_ ABSL_GUARDED_BY(mu_) = false;
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
