// What the rest of the runtime may ask of a channel made by locus::Connect
// (runtime/channel.cc), beyond the Channel interface.
#ifndef LOCUS_RUNTIME_INTERNAL_CHANNEL_INTERNAL_H_
#define LOCUS_RUNTIME_INTERNAL_CHANNEL_INTERNAL_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "internal/connect_attempts.h"
#include "internal/connection_core.h"
#include "internal/retry.h"
#include "internal/inproc_dispatcher.h"
#include "internal/transport_selection.h"
#include "locus/channel.h"

namespace locus::internal {

// The connection `channel` calls over now, connecting (again) if needed
// (a channel to several servers: that of a backend its policy picks).
// FAILED_PRECONDITION if it calls an in-process server directly;
// INVALID_ARGUMENT if `channel` was not made by Connect.
absl::StatusOr<std::shared_ptr<ConnectionCore>> ChannelConnection(Channel& channel, absl::Time deadline);

// The bootstrap object of the in-process server `channel` calls directly
// (a channel to several servers: if the backend its policy picks is one),
// or null.
std::shared_ptr<Service> ChannelInprocBootstrap(Channel& channel);
// The channel of the one server `channel` calls: for a channel to several
// servers the backend its policy picks now (connected, within
// connect_timeout), else `channel` itself. What needs one server's
// connection or bootstrap object picks once and asks that backend.
absl::StatusOr<std::shared_ptr<Channel>> ChannelBackend(const std::shared_ptr<Channel>& channel);

// What a channel made by Connect did to stay connected (tests,
// diagnostics): its connection attempts and retries.
struct ChannelStats {
  ConnectAttempts::Stats connects;
  AttemptingChannel::RetryStats retries;
};
absl::StatusOr<ChannelStats> GetChannelStats(Channel& channel);

// A channel pinned to the in-process server behind `dispatcher`
// (Server::InProcessChannel): no address, never reconnects; UNAVAILABLE
// once the server stopped.
std::shared_ptr<Channel> MakeInprocChannel(std::shared_ptr<InprocDispatcher> dispatcher,
                                           const ChannelOptions& options);
// A channel to the one server at `address`, as Connect makes it, not yet
// connected: a balanced channel's backend. `registry` must outlive it.
std::shared_ptr<Channel> MakeAddressChannel(std::string address, const ChannelOptions& options,
                                            TransportRegistry* registry, TransportPolicy policy);
// Connects a channel MakeAddressChannel made, unless it is connected:
// transport, handshake, then the closest transport the server offers.
// Failures that reach no server are UNAVAILABLE and marked not seen
// (call_not_seen.h); INVALID_ARGUMENT for another kind of channel.
absl::Status ConnectAddressChannel(Channel& channel, absl::Time deadline);
// Whether a channel MakeAddressChannel made is known to need a
// reconnection before its next call (its connection broke, its in-process
// server stopped). Never blocks: false while the channel is busy
// connecting, and for another kind of channel.
bool AddressChannelBroken(Channel& channel);

// The least keepalive_time a channel uses: a shorter one (but not zero or
// less, which turn keepalive off) is raised to it, as gRPC raises a
// client's to 10 s. Process-wide; tests lower it (connections made
// afterwards see the new floor). Returns the previous floor.
inline constexpr absl::Duration kMinClientKeepaliveTime = absl::Seconds(10);
absl::Duration SetMinClientKeepaliveTime(absl::Duration floor);
absl::Duration MinClientKeepaliveTime();

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_CHANNEL_INTERNAL_H_
