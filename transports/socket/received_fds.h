// File descriptors received on a Unix stream socket that no frame has
// claimed yet, and the rules that match them to frames (contract 12 of
// locus/transport.h; docs/wire.md, "File descriptors").
//
// A sender attaches a frame's descriptors to the frame's first byte, in a
// sendmsg that starts there (stream_writer.h). The kernel hands them out
// with the recvmsg that reads that byte, and ends that read with the bytes
// they came with; so the frame's header begins in the read that brings its
// descriptors. A frame claims them once it is complete (its sink gets
// them), which may be reads later. Hence, after each read has been
// decoded, descriptors may be left unclaimed only while a frame is
// unfinished: as many as its header claims once its header is read, at
// most one frame's worth while the header is partly read. Anything else
// was sent with no frame to claim it (or more than a frame may carry), and
// the connection is closed as malformed input. So a peer can make this side
// hold at most 2 x kMaxFdsPerFrame descriptors it has not delivered (one
// frame's waiting, and those of the read that exceeds that).
//
// Example (the reader-role holder, for each read):
//   std::vector<OwnedFd> incoming;
//   absl::Status ok = control.Collect(msg, &incoming);     // frame_fds.h
//   received.Add(std::move(incoming));
//   ...decoder delivers frames: received.Claim(frame.header.flags, &frame.fds)...
//   ok = received.EndOfRead(may_stay);  // error: close
//   (may_stay: kMaxFdsPerFrame while a header is partly read, the count
//   an unfinished frame's header claims, else 0)
//
// Thread-compatible: the reader-role holder's.
#ifndef LOCUS_TRANSPORTS_SOCKET_RECEIVED_FDS_H_
#define LOCUS_TRANSPORTS_SOCKET_RECEIVED_FDS_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "locus/fd.h"
#include "locus/transport.h"
#include "transports/common/frame_fds.h"

namespace locus::internal {

class ReceivedFds {
 public:
  // What one read brought, in order.
  void Add(std::vector<OwnedFd> fds) {
    for (OwnedFd& fd : fds) fds_.push_back(std::move(fd));
  }

  // For a frame (or a skipped oversize frame) whose `flags` claim
  // descriptors: moves that many, the oldest first, to `*out`.
  // INVALID_ARGUMENT if the claim exceeds kMaxFdsPerFrame or what arrived.
  absl::Status Claim(uint32_t flags, std::vector<OwnedFd>* out) {
    const size_t count = DecodeFdCount(flags);
    if (count == 0) return absl::OkStatus();
    if (count > kMaxFdsPerFrame) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a frame claims ", count, " file descriptors; at most ", kMaxFdsPerFrame, " are allowed"));
    }
    if (count > fds_.size()) {
      return absl::InvalidArgumentError(absl::StrCat("a frame claims ", count,
                                                     " file descriptors but ", fds_.size(),
                                                     " arrived with it"));
    }
    for (size_t i = 0; i < count; ++i) {
      out->push_back(std::move(fds_.front()));
      fds_.pop_front();
    }
    return absl::OkStatus();
  }

  // After a read's bytes were decoded: at most `may_stay` descriptors may
  // wait for the unfinished frame that may claim them (see the file
  // comment). INVALID_ARGUMENT (and everything held closed) for more.
  absl::Status EndOfRead(size_t may_stay) {
    if (fds_.size() <= std::min(may_stay, kMaxFdsPerFrame)) return absl::OkStatus();
    const size_t left = fds_.size();
    Clear();
    return absl::InvalidArgumentError(
        absl::StrCat(left, " file descriptors arrived with no frame that claims them"));
  }

  // Closes every descriptor held.
  void Clear() { fds_.clear(); }

  size_t size() const { return fds_.size(); }

 private:
  std::deque<OwnedFd> fds_;
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SOCKET_RECEIVED_FDS_H_
