#include "transports/common/frame_fds.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace locus::internal {

void FdsToSend::AttachTo(absl::Span<const int> fds, msghdr* msg) {
  if (fds.empty()) {
    msg->msg_control = nullptr;
    msg->msg_controllen = 0;
    return;
  }
  std::memset(control_, 0, sizeof(control_));
  msg->msg_control = control_;
  msg->msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
  cmsghdr* cmsg = CMSG_FIRSTHDR(msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
}

void FdsToReceive::PrepareFor(msghdr* msg) {
  msg->msg_control = control_;
  msg->msg_controllen = sizeof(control_);
}

absl::Status FdsToReceive::Collect(const msghdr& msg, std::vector<OwnedFd>* fds) {
  // Owned from the start: every return below closes what it does not hand on.
  std::vector<OwnedFd> received;
  if (msg.msg_control != nullptr && msg.msg_controllen >= sizeof(cmsghdr)) {
    for (const cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr;
         cmsg = CMSG_NXTHDR(const_cast<msghdr*>(&msg), const_cast<cmsghdr*>(cmsg))) {
      if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS ||
          cmsg->cmsg_len < CMSG_LEN(0)) {
        continue;
      }
      const size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
        received.emplace_back(fd);
      }
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "file descriptors from the peer were cut short (MSG_CTRUNC: more than ", kMaxFdsPerFrame,
        " in one message, or this process is out of descriptors)"));
  }
  if (received.size() > kMaxFdsPerFrame) {
    return absl::InvalidArgumentError(absl::StrCat("the peer sent ", received.size(),
                                                   " file descriptors in one message; at most ",
                                                   kMaxFdsPerFrame, " belong to a frame"));
  }
  for (const OwnedFd& fd : received) {
    struct stat st;
    if (fd.get() < 0 || fstat(fd.get(), &st) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("a file descriptor from the peer is not usable: ", std::strerror(errno)));
    }
  }
  for (OwnedFd& fd : received) fds->push_back(std::move(fd));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<OwnedFd>> DuplicateFds(absl::Span<const int> fds) {
  std::vector<OwnedFd> copies;
  copies.reserve(fds.size());
  for (int fd : fds) {
    const int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) {
      const int err = errno;
      if (err == EBADF) {
        return absl::InvalidArgumentError(absl::StrCat("file descriptor ", fd, " is not open"));
      }
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot duplicate file descriptor ", fd, ": ", std::strerror(err)));
    }
    copies.emplace_back(copy);
  }
  return copies;
}

}  // namespace locus::internal
