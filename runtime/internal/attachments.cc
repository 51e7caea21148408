#include "internal/attachments.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/timer_queue.h"
#include "google/protobuf/message.h"
#include "internal/object_registry.h"

namespace locus::internal {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::MessageLite;
using google::protobuf::Reflection;

constexpr int kMaxDepth = 100;  // protobuf's default recursion limit

template <typename M, typename OnRef, typename OnFd>
absl::Status Walk(M& message, int depth, OnRef& on_ref, OnFd& on_fd);

template <typename M, typename OnRef, typename OnFd>
absl::Status Visit(M& sub, int depth, OnRef& on_ref, OnFd& on_fd) {
  using Ref = std::conditional_t<std::is_const_v<M>, const ObjectRef, ObjectRef>;
  using Fd = std::conditional_t<std::is_const_v<M>, const FileDescriptor, FileDescriptor>;
  if (sub.GetDescriptor() == ObjectRef::descriptor()) {
    Ref* ref = google::protobuf::DynamicCastToGenerated<ObjectRef>(&sub);
    if (ref == nullptr) return absl::InvalidArgumentError("locus.ObjectRef of a foreign descriptor pool");
    return on_ref(*ref);
  }
  if (sub.GetDescriptor() == FileDescriptor::descriptor()) {
    Fd* fd = google::protobuf::DynamicCastToGenerated<FileDescriptor>(&sub);
    if (fd == nullptr) return absl::InvalidArgumentError("locus.FileDescriptor of a foreign descriptor pool");
    return on_fd(*fd);
  }
  return Walk(sub, depth + 1, on_ref, on_fd);
}

template <typename M, typename OnRef, typename OnFd>
absl::Status Walk(M& message, int depth, OnRef& on_ref, OnFd& on_fd) {
  if (depth > kMaxDepth) return absl::InvalidArgumentError("message nests too deeply");
  const Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (field->is_repeated()) {
      const int size = reflection->FieldSize(message, field);
      for (int i = 0; i < size; ++i) {
        absl::Status visited;
        if constexpr (std::is_const_v<M>) {
          visited = Visit(reflection->GetRepeatedMessage(message, field, i), depth, on_ref, on_fd);
        } else {
          visited = Visit(*reflection->MutableRepeatedMessage(&message, field, i), depth, on_ref, on_fd);
        }
        if (!visited.ok()) return visited;
      }
    } else {
      absl::Status visited;
      if constexpr (std::is_const_v<M>) {
        visited = Visit(reflection->GetMessage(message, field), depth, on_ref, on_fd);
      } else {
        visited = Visit(*reflection->MutableMessage(&message, field), depth, on_ref, on_fd);
      }
      if (!visited.ok()) return visited;
    }
  }
  return absl::OkStatus();
}

absl::Status NotReflective(const MessageLite& message) {
  return absl::InvalidArgumentError(absl::StrCat(
      message.GetTypeName(), " is a lite message: object references and descriptors need reflection"));
}

}  // namespace

absl::Status ForEachAttachment(MessageLite& message, absl::FunctionRef<absl::Status(ObjectRef&)> on_ref,
                               absl::FunctionRef<absl::Status(FileDescriptor&)> on_fd) {
  Message* full = dynamic_cast<Message*>(&message);
  if (full == nullptr) return NotReflective(message);
  return Walk(*full, 0, on_ref, on_fd);
}

absl::Status ForEachAttachment(const MessageLite& message,
                               absl::FunctionRef<absl::Status(const ObjectRef&)> on_ref,
                               absl::FunctionRef<absl::Status(const FileDescriptor&)> on_fd) {
  const Message* full = dynamic_cast<const Message*>(&message);
  if (full == nullptr) return NotReflective(message);
  return Walk(*full, 0, on_ref, on_fd);
}

// ---------------------------------------------------------------------------

FdInbox& FdInbox::Get() {
  static FdInbox* inbox = new FdInbox();
  return *inbox;
}

int64_t FdInbox::Put(OwnedFd fd) {
  absl::MutexLock lock(&mu_);
  int64_t ticket = 0;
  do {
    const std::string bytes = RandomBytes(sizeof(ticket));
    uint64_t random = 0;
    std::memcpy(&random, bytes.data(), sizeof(random));
    // Above 2^40 and positive: never a descriptor number, never "none".
    ticket = static_cast<int64_t>((random >> 2) | (uint64_t{1} << 41));
  } while (fds_.contains(ticket));
  fds_.emplace(ticket, std::move(fd));
  return ticket;
}

absl::StatusOr<OwnedFd> FdInbox::Take(int64_t ticket) {
  absl::MutexLock lock(&mu_);
  auto it = fds_.find(ticket);
  if (it == fds_.end()) {
    return absl::NotFoundError(
        "no received descriptor for this field (none was sent, it was taken already, or it was "
        "closed as unclaimed)");
  }
  OwnedFd fd = std::move(it->second);
  fds_.erase(it);
  return fd;
}

absl::StatusOr<int> FdInbox::Peek(int64_t ticket) const {
  absl::MutexLock lock(&mu_);
  auto it = fds_.find(ticket);
  if (it == fds_.end()) return absl::NotFoundError("descriptor no longer available");
  return it->second.get();
}

void FdInbox::Discard(int64_t ticket) {
  OwnedFd closed;  // closed outside the lock
  absl::MutexLock lock(&mu_);
  auto it = fds_.find(ticket);
  if (it == fds_.end()) return;
  closed = std::move(it->second);
  fds_.erase(it);
}

void FdInbox::PutBack(int64_t ticket, OwnedFd fd) {
  absl::MutexLock lock(&mu_);
  fds_.emplace(ticket, std::move(fd));
}

size_t FdInbox::size() const {
  absl::MutexLock lock(&mu_);
  return fds_.size();
}

ReceivedAttachments::~ReceivedAttachments() {
  for (int64_t ticket : tickets_) FdInbox::Get().Discard(ticket);
}

int64_t ReceivedAttachments::AddFd(OwnedFd fd) {
  const int64_t ticket = FdInbox::Get().Put(std::move(fd));
  tickets_.push_back(ticket);
  return ticket;
}

void ReceivedAttachments::ExpireAfter(absl::Duration after) && {
  if (empty()) return;
  auto scope = std::make_shared<ReceivedAttachments>(std::move(*this));
  // The holds' release may send frames: off the timer thread.
  TimerQueue::Get().Schedule(absl::Now() + after, [scope]() mutable {
    ObjectPool().Post([scope = std::move(scope)] {});
  });
}

// ---------------------------------------------------------------------------

PreparedFds::~PreparedFds() {
  for (auto& [ticket, fd] : given) FdInbox::Get().PutBack(ticket, std::move(fd));
}

absl::StatusOr<bool> SerializeWithFds(const MessageLite& message, std::string* payload,
                                      PreparedFds* fds) {
  bool any = false;
  absl::Status found = ForEachAttachment(
      message, [](const ObjectRef&) { return absl::OkStatus(); },
      [&any](const FileDescriptor& fd) {
        if (fd.handle() >= 0) any = true;
        return absl::OkStatus();
      });
  if (!found.ok()) return found;
  if (!any) return false;
  std::unique_ptr<MessageLite> copy(message.New());
  copy->CheckTypeAndMergeFrom(message);
  absl::Status indexed = ForEachAttachment(
      *copy, [](ObjectRef&) { return absl::OkStatus(); },
      [fds](FileDescriptor& field) {
        const int64_t handle = field.handle();
        if (handle < 0) return absl::OkStatus();
        if (fds->numbers.size() == kMaxFdsPerFrame) {
          return absl::InvalidArgumentError(
              absl::StrCat("a message carries at most ", kMaxFdsPerFrame, " descriptors"));
        }
        int fd = -1;
        if (IsFdTicket(handle)) {
          absl::StatusOr<OwnedFd> taken = FdInbox::Get().Take(handle);
          if (!taken.ok()) {
            return absl::InvalidArgumentError(
                "a locus.FileDescriptor's descriptor was sent already, taken, or expired");
          }
          fd = taken->get();
          fds->given.emplace_back(handle, *std::move(taken));
        } else if (handle <= INT32_MAX && fcntl(static_cast<int>(handle), F_GETFD) >= 0) {
          fd = static_cast<int>(handle);
        } else {
          return absl::InvalidArgumentError(
              absl::StrCat("locus.FileDescriptor handle ", handle, " is not an open descriptor"));
        }
        fds->numbers.push_back(fd);
        field.set_handle(static_cast<int64_t>(fds->numbers.size() - 1));
        return absl::OkStatus();
      });
  if (!indexed.ok()) return indexed;
  if (!copy->SerializeToString(payload)) return absl::InternalError("cannot serialize the message");
  return true;
}

absl::Status DuplicateFdsInPlace(MessageLite& message, ReceivedAttachments* scope) {
  return ForEachAttachment(
      message, [](ObjectRef&) { return absl::OkStatus(); },
      [scope](FileDescriptor& field) {
        const int64_t handle = field.handle();
        if (handle < 0) return absl::OkStatus();
        int fd = -1;
        if (IsFdTicket(handle)) {
          absl::StatusOr<OwnedFd> given = FdInbox::Get().Take(handle);
          if (given.ok()) fd = given->release();
        } else if (handle <= INT32_MAX) {
          fd = fcntl(static_cast<int>(handle), F_DUPFD_CLOEXEC, 0);
        }
        if (fd < 0) {
          field.set_handle(-1);
          return absl::InvalidArgumentError(
              absl::StrCat("locus.FileDescriptor handle ", handle, " is not an open descriptor"));
        }
        field.set_handle(scope->AddFd(OwnedFd(fd)));
        return absl::OkStatus();
      });
}

absl::Status CallDirect(const RpcMethod& method, MethodHandler& handler, ServerContext* context,
                        const MessageLite& request, MessageLite* response) {
  if (!method.has_attachments) return handler.CallDirect(context, request, response);
  std::unique_ptr<MessageLite> copy(request.New());
  copy->CheckTypeAndMergeFrom(request);
  ReceivedAttachments request_scope;
  absl::Status status = DuplicateFdsInPlace(*copy, &request_scope);
  if (status.ok()) status = handler.CallDirect(context, *copy, response);
  if (status.ok() && !method.oneway) {
    ReceivedAttachments reply_scope;
    status = DuplicateFdsInPlace(*response, &reply_scope);
    std::move(reply_scope).ExpireAfter(kUnclaimedFdTimeout);
  }
  return status;
}

}  // namespace locus::internal
