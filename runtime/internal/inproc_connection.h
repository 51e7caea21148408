// An in-process pair of connected `Connection`s: frames sent on one end are
// delivered to the other end's sink, in order, with no sockets. In-process
// channels use it for streaming calls (unary calls take the direct path,
// InprocDispatcher), so streams in one process get exactly the semantics
// (flow control, deadlines, cancellation, limits) of the remote path.
//
// Delivery happens on the sending thread: Send appends the frame to the
// peer's inbox and, unless another thread is already delivering to that
// peer, delivers the inbox before returning. So a sender must not hold a
// lock that the receiving sink takes (ConnectionCore never sends under its
// locks). Frames queued before Start are delivered by Start. Closing either
// end delivers what was already queued, then OnClosed, to both ends.
// File descriptors (SendWithFds) travel as close-on-exec duplicates made by
// the sender, closed with the frame if the sink does not take them or the
// frame is never delivered.
//
// Example:
//   auto [client_end, server_end] = MakeInprocPair({server_info, limit}, {client_info, limit});
//   server.Accept(std::move(server_end));
//   auto core = ConnectionCore::Create(std::move(client_end), options);
#ifndef LOCUS_RUNTIME_INTERNAL_INPROC_CONNECTION_H_
#define LOCUS_RUNTIME_INTERNAL_INPROC_CONNECTION_H_

#include <memory>
#include <utility>

#include "locus/transport.h"

namespace locus::internal {

// Returns {client end, server end}; each InprocEnd's `peer` is what that end
// reports as peer(). A payload larger than the receiving end's
// `max_receive_message_size` is not delivered: the receiver gets
// OnOversizeFrame, as from a socket transport.
struct InprocEnd {
  PeerInfo peer;
  uint64_t max_receive_message_size;
};
std::pair<std::unique_ptr<Connection>, std::unique_ptr<Connection>> MakeInprocPair(
    InprocEnd client, InprocEnd server);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_INPROC_CONNECTION_H_
