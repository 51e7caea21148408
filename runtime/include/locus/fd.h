// File descriptors in messages: OwnedFd, and the helpers that put one into a
// locus.FileDescriptor field (locus/rmi.proto) and take one out.
//
// Example (a handler gives a descriptor away; the client gets a duplicate):
//   locus::OwnedFd file(open("/etc/hostname", O_RDONLY | O_CLOEXEC));
//   locus::SetFd(reply->mutable_file(), std::move(file));  // closed once sent
// Example (receiver):
//   absl::StatusOr<locus::OwnedFd> fd = locus::TakeFd(reply.file());
//   if (!fd.ok()) return fd.status();
//
// Descriptors travel with SCM_RIGHTS on Unix-socket and shared-memory
// connections and are duplicated on the in-process path; a call that would
// send one over TCP or UDP fails with FAILED_PRECONDITION before anything is
// sent. A received descriptor belongs to the runtime until TakeFd redeems
// it: descriptors a server handler did not take are closed when it returns,
// those of a reply or stream message nobody took after
// kUnclaimedFdTimeout. Received descriptors are checked with fstat first.
#ifndef LOCUS_FD_H_
#define LOCUS_FD_H_

#include <unistd.h>

#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace locus {

class FileDescriptor;  // locus/rmi.pb.h

// Owns one file descriptor and closes it when destroyed. Move-only.
class OwnedFd {
 public:
  OwnedFd() = default;
  explicit OwnedFd(int fd) : fd_(fd) {}
  OwnedFd(OwnedFd&& other) noexcept : fd_(other.release()) {}
  OwnedFd& operator=(OwnedFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  ~OwnedFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  // Gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }
  // Closes the descriptor held (if any) and takes `fd`.
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// How long a received descriptor nobody took with TakeFd stays open (a
// reply's or a stream message's; a request's close when its handler returns).
inline constexpr absl::Duration kUnclaimedFdTimeout = absl::Seconds(10);

// Lends `fd` to `field`: it stays the caller's and must stay open until the
// message has been sent (a request: the call returned; a reply: the call was
// answered, which is after the handler returned, so a handler should give
// its descriptor instead). fd < 0 clears the field.
void SetFd(FileDescriptor* field, int fd);
// Gives `fd` to `field`: the runtime closes it once the message has been
// sent (once: a second send fails INVALID_ARGUMENT), or after
// kUnclaimedFdTimeout if the message is never sent.
void SetFd(FileDescriptor* field, OwnedFd fd);

// Redeems a descriptor received in `field`, once: NOT_FOUND if the field
// carries none, it was taken already, or it was closed as unclaimed.
absl::StatusOr<OwnedFd> TakeFd(const FileDescriptor& field);

}  // namespace locus

#endif  // LOCUS_FD_H_
