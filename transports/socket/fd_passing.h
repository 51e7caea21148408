// Small blocking-with-deadline helpers for the few messages exchanged on a
// Unix socket outside the frame stream (shared-memory setup): one message
// with an fd attached (SCM_RIGHTS), and reading an exact byte count.
//
// Example:
//   absl::Status sent = SendWithFd(socket_fd, frame_bytes, memfd);
//   if (!sent.ok()) return sent;
//   absl::Status read = ReadExactly(socket_fd, buffer, 24, deadline);
#ifndef LOCUS_TRANSPORTS_SOCKET_FD_PASSING_H_
#define LOCUS_TRANSPORTS_SOCKET_FD_PASSING_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace locus::internal {

// Sends `bytes` in one sendmsg, with `fd_to_pass` attached unless it is < 0.
// UNAVAILABLE on failure or a short write.
absl::Status SendWithFd(int socket_fd, absl::string_view bytes, int fd_to_pass);

// Reads exactly `size` bytes from a non-blocking socket before `deadline`.
// UNAVAILABLE if the peer closes first, DEADLINE_EXCEEDED on timeout.
absl::Status ReadExactly(int socket_fd, char* out, size_t size, absl::Time deadline);

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SOCKET_FD_PASSING_H_
