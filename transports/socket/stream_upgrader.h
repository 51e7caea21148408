// A hook through which a stream listener hands over accepted sockets whose
// first frame asks for another transport (FrameType::kTransportSetup), e.g.
// the move of a same-host Unix-socket connection to shared memory.
//
// Example:
//   auto unix = std::make_shared<UnixTransport>(shm_transport->upgrader());
#ifndef LOCUS_TRANSPORTS_SOCKET_STREAM_UPGRADER_H_
#define LOCUS_TRANSPORTS_SOCKET_STREAM_UPGRADER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "locus/transport.h"

namespace locus::internal {

class StreamUpgrader {
 public:
  virtual ~StreamUpgrader() = default;
  // `fd` is an accepted, non-blocking socket whose first 24 bytes (peeked,
  // not consumed) are a kTransportSetup FrameHeader. Takes ownership of `fd`
  // (closes it on error). Runs on an event-loop thread: must not block.
  virtual absl::StatusOr<std::unique_ptr<Connection>> Upgrade(int fd, PeerInfo peer,
                                                              const TransportOptions& options) = 0;
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SOCKET_STREAM_UPGRADER_H_
