// What travels inside messages besides data: references to objects
// (locus.ObjectRef) and file descriptors (locus.FileDescriptor). Finding
// them (a walk over a message's set fields by reflection, only for methods
// locusc marked RpcMethod::has_attachments), the inbox that holds received
// descriptors until TakeFd, and the scope that holds what a received
// message brought until its receiver had the chance to take it.
//
// Example (receiving side):
//   ReceivedAttachments scope;
//   ForEachAttachment(*message, [&](ObjectRef& ref) { ... },
//                     [&](FileDescriptor& fd) { fd.set_handle(scope.AddFd(std::move(owned))); });
//   // scope's destructor closes untaken descriptors and drops the holds.
//
// Thread-safety: the walk touches only its message; FdInbox is thread-safe.
#ifndef LOCUS_RUNTIME_INTERNAL_ATTACHMENTS_H_
#define LOCUS_RUNTIME_INTERNAL_ATTACHMENTS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "locus/fd.h"
#include "locus/rmi.pb.h"
#include "locus/service.h"

namespace google::protobuf {
class Message;
class MessageLite;
}  // namespace google::protobuf

namespace locus::internal {

// Calls `on_ref` and `on_fd` for every ObjectRef and FileDescriptor set in
// `message`, at any depth (nested, repeated, map values, oneofs).
// INVALID_ARGUMENT if `message` is a lite message (no reflection) or nests
// deeper than protobuf's parse limit.
absl::Status ForEachAttachment(google::protobuf::MessageLite& message,
                               absl::FunctionRef<absl::Status(ObjectRef&)> on_ref,
                               absl::FunctionRef<absl::Status(FileDescriptor&)> on_fd);
absl::Status ForEachAttachment(const google::protobuf::MessageLite& message,
                               absl::FunctionRef<absl::Status(const ObjectRef&)> on_ref,
                               absl::FunctionRef<absl::Status(const FileDescriptor&)> on_fd);

// Received descriptors waiting for TakeFd, by ticket. A ticket is a random
// value above 2^40, so it is never mistaken for a descriptor number.
class FdInbox {
 public:
  static FdInbox& Get();
  int64_t Put(OwnedFd fd);
  // NOT_FOUND if `ticket` is not (or no longer) in the inbox.
  absl::StatusOr<OwnedFd> Take(int64_t ticket);
  // The descriptor of `ticket`, left in the inbox; NOT_FOUND as Take.
  absl::StatusOr<int> Peek(int64_t ticket) const;
  // Closes the descriptor of `ticket` if it is still here.
  void Discard(int64_t ticket);
  // Puts a descriptor Take() took back under its ticket.
  void PutBack(int64_t ticket, OwnedFd fd);
  size_t size() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int64_t, OwnedFd> fds_ ABSL_GUARDED_BY(mu_);
};

// What one received message brought: descriptors (inbox tickets) and holds
// on imported references. Destroying it discards untaken descriptors and
// drops the holds (a reference nobody made a Remote from is released).
// Move-only; not thread-safe.
class ReceivedAttachments {
 public:
  ReceivedAttachments() = default;
  ReceivedAttachments(ReceivedAttachments&&) = default;
  ReceivedAttachments& operator=(ReceivedAttachments&&) = default;
  ~ReceivedAttachments();

  // Puts `fd` in the inbox for this scope; returns its ticket.
  int64_t AddFd(OwnedFd fd);
  void AddHold(std::shared_ptr<void> hold) { holds_.push_back(std::move(hold)); }
  bool empty() const { return tickets_.empty() && holds_.empty(); }
  // Ends the scope `after` from now instead of at destruction (a reply's
  // attachments, which its receiver takes after the call returned).
  void ExpireAfter(absl::Duration after) &&;

 private:
  std::vector<int64_t> tickets_;
  std::vector<std::shared_ptr<void>> holds_;
};

// Whether a FileDescriptor handle is an inbox ticket (a given or received
// descriptor) rather than a lent descriptor number.
inline bool IsFdTicket(int64_t handle) { return handle >= (int64_t{1} << 40); }

// The descriptors of a message being sent: their numbers, in the order
// the receiver finds them by index, and the given ones (inbox tickets),
// taken out of the inbox for the send so that nothing closes them
// meanwhile. Unless Sent(), destruction puts those back.
struct PreparedFds {
  std::vector<int> numbers;
  std::vector<std::pair<int64_t, OwnedFd>> given;
  PreparedFds() = default;
  PreparedFds(const PreparedFds&) = delete;
  PreparedFds& operator=(const PreparedFds&) = delete;
  ~PreparedFds();
  // The frame left: the given descriptors are closed (the peer has its own).
  void Sent() { given.clear(); }
};

// A copy of `message` whose FileDescriptor handles are replaced by indexes
// into `fds->numbers`, serialized into `*payload`. Returns false (nothing
// written) if `message` carries no descriptor. INVALID_ARGUMENT if a handle
// is neither an open descriptor nor a ticket in the inbox, or for more than
// kMaxFdsPerFrame.
absl::StatusOr<bool> SerializeWithFds(const google::protobuf::MessageLite& message,
                                      std::string* payload, PreparedFds* fds);

// The in-process path: replaces each FileDescriptor handle of `message` (a
// descriptor of this process, the sender's) by the ticket of a duplicate in
// `scope`, as if it had been received.
absl::Status DuplicateFdsInPlace(google::protobuf::MessageLite& message, ReceivedAttachments* scope);

// An in-process call of `method` (ServiceTable entry `handler`) with the
// caller's own messages: for methods with attachments, on a copy of
// `request` whose descriptors are duplicates (as a socket would give), and
// the reply's descriptors duplicated for the caller (held for
// kUnclaimedFdTimeout); otherwise directly.
absl::Status CallDirect(const RpcMethod& method, MethodHandler& handler, ServerContext* context,
                        const google::protobuf::MessageLite& request,
                        google::protobuf::MessageLite* response);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_ATTACHMENTS_H_
