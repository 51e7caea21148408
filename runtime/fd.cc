// locus::SetFd and locus::TakeFd (locus/fd.h) over the runtime's inbox of
// descriptors (internal/attachments.h).
#include "locus/fd.h"

#include "base/timer_queue.h"
#include "internal/attachments.h"
#include "locus/rmi.pb.h"

namespace locus {

void SetFd(FileDescriptor* field, int fd) { field->set_handle(fd < 0 ? -1 : fd); }

void SetFd(FileDescriptor* field, OwnedFd fd) {
  if (!fd.valid()) {
    field->set_handle(-1);
    return;
  }
  const int64_t ticket = internal::FdInbox::Get().Put(std::move(fd));
  field->set_handle(ticket);
  // Closed if the message is never sent.
  internal::TimerQueue::Get().Schedule(absl::Now() + kUnclaimedFdTimeout,
                                       [ticket] { internal::FdInbox::Get().Discard(ticket); });
}

absl::StatusOr<OwnedFd> TakeFd(const FileDescriptor& field) {
  if (!internal::IsFdTicket(field.handle())) {
    return absl::NotFoundError("this locus.FileDescriptor carries no received descriptor");
  }
  return internal::FdInbox::Get().Take(field.handle());
}

}  // namespace locus
