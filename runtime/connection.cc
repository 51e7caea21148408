// Default implementations of locus::Connection's optional methods.
#include <fcntl.h>

#include "absl/strings/str_cat.h"
#include "internal/scratch_buffer.h"
#include "locus/transport.h"

namespace locus {

absl::Status Connection::SendWithPayloadWriter(const FrameHeader& header, absl::string_view meta,
                                               PayloadWriter write_payload, absl::Time deadline) {
  internal::ScratchBuffer buffer;
  std::string& payload = *buffer.get();
  // resize() of a reused buffer of similar length writes nothing: the
  // writer overwrites every byte.
  payload.resize(header.payload_length);
  if (!write_payload(payload.data())) {
    return absl::InternalError("could not encode the message to send");
  }
  return Send(header, meta, payload, deadline);
}

absl::Status ValidateFdsToSend(absl::Span<const int> fds) {
  if (fds.size() > kMaxFdsPerFrame) {
    return absl::InvalidArgumentError(absl::StrCat("a frame carries at most ", kMaxFdsPerFrame,
                                                   " file descriptors, not ", fds.size()));
  }
  for (int fd : fds) {
    if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("invalid file descriptor ", fd));
    if (fcntl(fd, F_GETFD) < 0) {
      return absl::InvalidArgumentError(absl::StrCat("file descriptor ", fd, " is not open"));
    }
  }
  return absl::OkStatus();
}

absl::Status Connection::SendWithFds(const FrameHeader& header, absl::string_view meta,
                                     absl::string_view payload, absl::Span<const int> fds,
                                     absl::Time deadline) {
  if (fds.empty()) return Send(header, meta, payload, deadline);
  absl::Status valid = ValidateFdsToSend(fds);
  if (!valid.ok()) return valid;
  return absl::FailedPreconditionError(
      absl::StrCat(peer().transport, " connections cannot carry file descriptors"));
}

}  // namespace locus
