// What the rest of the runtime may ask of a channel made by locus::Connect
// (runtime/channel.cc), beyond the Channel interface.
#ifndef LOCUS_RUNTIME_INTERNAL_CHANNEL_INTERNAL_H_
#define LOCUS_RUNTIME_INTERNAL_CHANNEL_INTERNAL_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "internal/connection_core.h"
#include "internal/inproc_dispatcher.h"
#include "locus/channel.h"

namespace locus::internal {

// The connection `channel` calls over now, connecting (again) if needed.
// FAILED_PRECONDITION if it calls an in-process server directly;
// INVALID_ARGUMENT if `channel` was not made by Connect.
absl::StatusOr<std::shared_ptr<ConnectionCore>> ChannelConnection(Channel& channel, absl::Time deadline);

// The bootstrap object of the in-process server `channel` calls directly,
// or null.
std::shared_ptr<Service> ChannelInprocBootstrap(Channel& channel);

// A channel pinned to the in-process server behind `dispatcher`
// (Server::InProcessChannel): no address, never reconnects; UNAVAILABLE
// once the server stopped.
std::shared_ptr<Channel> MakeInprocChannel(std::shared_ptr<InprocDispatcher> dispatcher,
                                           const ChannelOptions& options);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_CHANNEL_INTERNAL_H_
