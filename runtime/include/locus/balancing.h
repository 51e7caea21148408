// Channels to several servers: how locus::Connect spreads calls over the
// servers a target names, and how to see where each one went.
//
// A target names several servers when it is a comma-separated list of
// addresses ("tcp://10.0.0.1:7000,10.0.0.2:7000": an address without a
// scheme takes the tcp://, udp:// or dns: before it;
// "unix:/run/a.sock,tcp://b:7000") or a DNS name
// ("dns:///service.local:7000": every A and AAAA record, as tcp://
// backends), or a list mixing both. Every element is checked (tcp://host:port,
// a port from 1 to 65535, IPv6 addresses in brackets). A comma in the path
// of a unix:, unix-abstract:, shm: or shm-abstract: address is part of it
// ("unix:/run/a,b.sock" is one server) unless a scheme follows it: list
// sockets each with its scheme ("unix:/run/a.sock,unix:/run/b.sock").
// Each server (backend) gets a channel of its own that moves as close as
// its server lives (in-process, shared memory, Unix socket, else TCP), as
// a channel to one address does.
//
// Example:
//   locus::ChannelOptions options;
//   options.balancing.policy = locus::LoadBalancingPolicy::kRoundRobin;
//   absl::StatusOr<std::shared_ptr<locus::Channel>> channel =
//       locus::Connect("tcp://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000", options);
//   if (!channel.ok()) return channel.status();
//   for (const locus::BackendInfo& backend : locus::DescribeBackends(**channel)) {
//     std::printf("%s on %s\n", backend.address.c_str(), backend.transport.c_str());
//   }
//
// Calls: each call goes to one backend the policy picks among those that
// are up. Backends are connected in the background, each attempt bounded by
// connect_timeout, not by the deadline of a call waiting for it: a call
// with none up waits (until its deadline or cancellation) for one to
// connect, and pick-first also connects the next backend once the earlier
// ones have been connecting for a second (a server that never answers holds
// calls up that long, not for connect_timeout). An asynchronous call never
// blocks the thread that starts it. A unary call that fails UNAVAILABLE
// before any server saw it (connecting failed, the connection broke before
// the request was sent, the server's GOAWAY refused it) marks its backend
// failing and is sent again to another backend, within its deadline and
// max_attempts; a call a server may have seen (its connection broke while
// it ran) is not, unless retry_sent_calls says the methods may run twice.
// These are the only retries of calls no server saw: a backend's own
// channel leaves them to the balancer. A retry policy
// (locus/retry_policy.h) retries its codes on the backend the call is on.
// A call that finds every backend failing fails UNAVAILABLE at once; with
// CallOptions::wait_for_ready it waits instead (until its deadline or
// cancellation) for a backend to come back, without holding a thread.
// A stream stays on the backend it opened on, and remote objects
// (locus/object.h) on the backend that handed them out; BootstrapRef asks
// one backend the policy picks. A backend that failed is skipped, then
// tried again after an exponential backoff with jitter (reset once it
// connects); DNS names are resolved again every resolve_interval and when
// every backend failed.
#ifndef LOCUS_BALANCING_H_
#define LOCUS_BALANCING_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "locus/retry_policy.h"

namespace locus {

class Channel;

enum class LoadBalancingPolicy {
  // Every call goes to one backend: the first in the target's order that
  // connects; while it works calls stay there, when it fails they move to
  // the next that works (gRPC's pick_first).
  kPickFirst,
  // Calls rotate over every backend that is up (gRPC's round_robin); the
  // others are connected in the background.
  kRoundRobin,
};

// ChannelOptions::balancing. Ignored by channels to one address.
struct BalancingOptions {
  LoadBalancingPolicy policy = LoadBalancingPolicy::kPickFirst;
  // A backend that failed is skipped until this backoff is over (the same
  // parameters as a channel's reconnect_backoff, locus/retry_policy.h):
  // backoff.initial_backoff after the first failure, then multiplied per
  // further failure up to max_backoff, each wait spread by +/- jitter (at
  // most 0.5: a wait is never near zero); reset once the backend connects.
  // A backend's own channel adds no reconnect_backoff of its own: this one
  // keeps a failing backend out of use.
  ConnectionBackoff backoff;
  // DNS names in the target are resolved again this often (in the
  // background) and when no backend is left to try (at most once per
  // backoff.initial_backoff).
  absl::Duration resolve_interval = absl::Seconds(30);
  // Attempts one unary call may make, over different backends (at least 1).
  int max_attempts = 5;
  // Also send again, to another backend, a unary call that failed
  // UNAVAILABLE after it was sent: its server may have run it (it died or
  // its connection broke mid-call). Only for methods that may run twice.
  bool retry_sent_calls = false;
};

// One backend of a channel, as DescribeBackends sees it.
struct BackendInfo {
  enum class State {
    kIdle,        // not connected yet, or its backoff is over
    kConnecting,  // being connected
    kReady,       // connected: calls go here
    kFailing,     // failed; skipped until its backoff is over
  };
  std::string address;    // e.g. "tcp://10.0.0.2:7000" (resolved)
  // Where its calls go now: "inproc", "shm", "unix", "tcp", "udp"; "none"
  // unless it is ready.
  std::string transport;
  State state = State::kIdle;
  absl::Status last_error;  // why it last failed (OK if it has not)
};

// The backends of `channel`: those of a balanced channel in the target's
// order, or the one server of any other channel. Thread-safe.
std::vector<BackendInfo> DescribeBackends(const Channel& channel);

}  // namespace locus

#endif  // LOCUS_BALANCING_H_
