// File descriptors carried with frames (Connection::SendWithFds, contract 12
// of locus/transport.h), the parts every transport that carries them over a
// Unix socket shares: how a frame says how many descriptors belong to it,
// the SCM_RIGHTS control message that sends them, and taking in what one
// recvmsg received.
//
// On the wire (docs/wire.md, "File descriptors"): bits 25..31 of a frame's
// flags, transport-private (kTransportPrivateFlags), hold the number of
// descriptors that belong to the frame (1 .. kMaxFdsPerFrame; 0: none). How
// the descriptors themselves travel is the transport's: attached to the
// frame's first byte on a Unix stream socket, in a message of their own on
// the socket beside a shared-memory connection's rings.
//
// Example (sending):
//   FdsToSend control;
//   control.AttachTo(fds, &msg);   // msg: the frame's sendmsg
//   header.flags |= EncodeFdCount(fds.size());
// Example (receiving):
//   FdsToReceive control;
//   control.PrepareFor(&msg);
//   ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
//   std::vector<OwnedFd> fds;
//   absl::Status ok = control.Collect(msg, &fds);  // error: close the connection
//
// Thread-compatible: one object per sending or receiving thread at a time.
#ifndef LOCUS_TRANSPORTS_COMMON_FRAME_FDS_H_
#define LOCUS_TRANSPORTS_COMMON_FRAME_FDS_H_

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "locus/fd.h"
#include "locus/frame.h"
#include "locus/transport.h"

namespace locus::internal {

// The descriptor count field of a frame's flags.
inline constexpr uint32_t kFdCountShift = 25;
inline constexpr uint32_t kFlagsFdCount = 0x7fu << kFdCountShift;
static_assert((kFlagsFdCount & kTransportPrivateFlags) == kFlagsFdCount,
              "the descriptor count is transport-private");
static_assert(kMaxFdsPerFrame <= (kFlagsFdCount >> kFdCountShift), "the count field holds the limit");

// `count` (at most kMaxFdsPerFrame) as frame flags.
inline uint32_t EncodeFdCount(size_t count) {
  return static_cast<uint32_t>(count) << kFdCountShift;
}
// The count a frame's flags claim: up to 127, which the receiver checks
// against kMaxFdsPerFrame (a peer's flags are untrusted).
inline size_t DecodeFdCount(uint32_t flags) { return (flags & kFlagsFdCount) >> kFdCountShift; }

// The SCM_RIGHTS control message of one sendmsg.
class FdsToSend {
 public:
  // Points `msg`'s control at `fds` (validated: ValidateFdsToSend), or at
  // nothing if `fds` is empty. Valid while this object lives and is not
  // reused.
  void AttachTo(absl::Span<const int> fds, msghdr* msg);

 private:
  alignas(cmsghdr) char control_[CMSG_SPACE(sizeof(int) * kMaxFdsPerFrame)];
};

// Room for the descriptors of one recvmsg: at most kMaxFdsPerFrame; a
// message with more arrives truncated (MSG_CTRUNC; the kernel closes what
// did not fit), which Collect reports. Pass MSG_CMSG_CLOEXEC to recvmsg.
class FdsToReceive {
 public:
  // Points `msg`'s control at this object's buffer.
  void PrepareFor(msghdr* msg);
  // After recvmsg returned (any result, even an error: then nothing came):
  // appends the descriptors received, each checked with fstat, to `*fds`.
  // On error (MSG_CTRUNC, more than kMaxFdsPerFrame, a descriptor fstat
  // refuses) appends nothing and closes every descriptor received: the
  // caller closes the connection with the returned reason (INVALID_ARGUMENT,
  // naming the problem).
  absl::Status Collect(const msghdr& msg, std::vector<OwnedFd>* fds);

 private:
  alignas(cmsghdr) char control_[CMSG_SPACE(sizeof(int) * kMaxFdsPerFrame)];
};

// Close-on-exec duplicates of `fds` (F_DUPFD_CLOEXEC), for a transport that
// must keep descriptors past the call that was given them. RESOURCE_EXHAUSTED
// (and no duplicates left open) if this process has no descriptors to spare.
absl::StatusOr<std::vector<OwnedFd>> DuplicateFds(absl::Span<const int> fds);

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_COMMON_FRAME_FDS_H_
