// What the rest of the runtime may ask of a channel made by locus::Connect
// (runtime/channel.cc), beyond the Channel interface.
#ifndef LOCUS_RUNTIME_INTERNAL_CHANNEL_INTERNAL_H_
#define LOCUS_RUNTIME_INTERNAL_CHANNEL_INTERNAL_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "internal/connect_attempts.h"
#include "internal/connection_core.h"
#include "internal/retry.h"
#include "locus/channel.h"

namespace locus::internal {

// The connection `channel` calls over now, connecting (again) if needed.
// FAILED_PRECONDITION if it calls an in-process server directly;
// INVALID_ARGUMENT if `channel` was not made by Connect.
absl::StatusOr<std::shared_ptr<ConnectionCore>> ChannelConnection(Channel& channel, absl::Time deadline);

// The bootstrap object of the in-process server `channel` calls directly,
// or null.
std::shared_ptr<Service> ChannelInprocBootstrap(Channel& channel);

// `channel` as one attempt at a time (retry.h), for a channel over several
// servers that retries across them; null if not made by Connect.
std::shared_ptr<AttemptingChannel> ChannelAttempts(const std::shared_ptr<Channel>& channel);

// What a channel made by Connect did to stay connected (tests,
// diagnostics): its connection attempts and retries.
struct ChannelStats {
  ConnectAttempts::Stats connects;
  AttemptingChannel::RetryStats retries;
};
absl::StatusOr<ChannelStats> GetChannelStats(Channel& channel);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_CHANNEL_INTERNAL_H_
