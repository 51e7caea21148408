#include "transports/unix/inherited_socket.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/log.h"
#include "locus/frame.h"
#include "transports/socket/event_loop.h"
#include "transports/socket/stream_connection.h"
#include "transports/unix/unix_transport.h"

namespace locus::internal {
namespace {

constexpr absl::string_view kPrefix = "fd:";

// Serializes takes, so that two racing users of one address cannot both
// move the same descriptor.
absl::Mutex take_mu(absl::kConstInit);

const char* FileKind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a pipe";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a socket";
}

int SocketOption(int fd, int option) {
  int value = -1;
  socklen_t len = sizeof(value);
  if (getsockopt(fd, SOL_SOCKET, option, &value, &len) != 0) return -1;
  return value;
}

// The accepting side's wait for the first bytes. Claimed exactly once:
// by OnEvents, which then owns the descriptor and delivers (or closes) it,
// or by the listener's destructor, which closes it.
class FirstBytesWaiter final : public FdHandler {
 public:
  FirstBytesWaiter(int fd, std::string address, EventLoop* loop, const TransportOptions& options,
                   std::shared_ptr<StreamUpgrader> upgrader, AcceptCallback on_accept)
      : fd_(fd),
        address_(std::move(address)),
        loop_(loop),
        options_(options),
        upgrader_(std::move(upgrader)),
        on_accept_(std::move(on_accept)) {}

  // As SocketListener's FirstFrameSniffer: a kTransportSetup header goes to
  // the upgrader, anything else (even a first frame sent in pieces, or the
  // peer's hang-up) makes a StreamConnection with the bytes still unread.
  void OnEvents(uint32_t) override {
    FrameHeader header{};
    const ssize_t n = recv(fd_, &header, sizeof(header), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (!Claim()) return;
    loop_->Remove(fd_);  // on the loop thread: does not wait
    PeerInfo peer = DescribeUnixPeer(fd_);
    if (upgrader_ != nullptr && n == static_cast<ssize_t>(sizeof(header)) &&
        header.magic == kFrameMagic && header.type == static_cast<uint8_t>(FrameType::kTransportSetup)) {
      absl::StatusOr<std::unique_ptr<Connection>> upgraded = upgrader_->Upgrade(fd_, peer, options_);
      if (!upgraded.ok()) {  // Upgrade closed the socket
        LOCUS_LOG(WARNING) << "refused transport upgrade over " << address_ << ": "
                           << upgraded.status().message();
        return;
      }
      Deliver(*std::move(upgraded));
      return;
    }
    Deliver(StreamConnection::Create(fd_, std::move(peer), options_));
  }

  // True for the first caller only.
  bool Claim() { return !claimed_.exchange(true, std::memory_order_acq_rel); }

  // No accept callback runs once this returns.
  void Stop() {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }

 private:
  void Deliver(std::unique_ptr<Connection> connection) {
    absl::MutexLock lock(&mu_);
    if (stopped_) {
      connection->Close(absl::UnavailableError("listener closed"));
      return;
    }
    on_accept_(std::move(connection));
  }

  const int fd_;
  const std::string address_;
  EventLoop* const loop_;
  const TransportOptions options_;
  const std::shared_ptr<StreamUpgrader> upgrader_;
  std::atomic<bool> claimed_{false};
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  AcceptCallback on_accept_ ABSL_GUARDED_BY(mu_);
};

class InheritedSocketListener final : public Listener {
 public:
  InheritedSocketListener(int fd, std::string address, EventLoop* loop,
                          std::shared_ptr<FirstBytesWaiter> waiter)
      : fd_(fd), address_(std::move(address)), loop_(loop), waiter_(std::move(waiter)) {}

  ~InheritedSocketListener() override {
    waiter_->Stop();
    // Unclaimed: the socket is still ours (once claimed, the number may
    // already belong to the delivered connection's registration).
    if (waiter_->Claim()) {
      loop_->Remove(fd_);  // waits for an OnEvents in progress, which finds the claim
      close(fd_);
    }
  }

  std::string address() const override { return address_; }

 private:
  const int fd_;
  const std::string address_;
  EventLoop* const loop_;
  const std::shared_ptr<FirstBytesWaiter> waiter_;
};

}  // namespace

absl::StatusOr<int> ParseInheritedSocketAddress(absl::string_view address) {
  if (!absl::StartsWith(address, kPrefix)) {
    return absl::InvalidArgumentError(absl::StrCat("not a descriptor address: \"", address, "\""));
  }
  const absl::string_view digits = address.substr(kPrefix.size());
  int64_t number = 0;
  for (char c : digits) {
    if (c < '0' || c > '9' || number > std::numeric_limits<int>::max()) {
      number = -1;
      break;
    }
    number = number * 10 + (c - '0');
  }
  if (digits.empty() || number < 0 || number > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad descriptor address \"", address, "\": expected fd:N, N a descriptor number"));
  }
  return static_cast<int>(number);
}

absl::StatusOr<int> TakeInheritedSocket(absl::string_view address) {
  absl::StatusOr<int> number = ParseInheritedSocketAddress(address);
  if (!number.ok()) return number.status();
  const int fd = *number;
  absl::MutexLock lock(&take_mu);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        address, ": descriptor ", fd, " is not open (", std::strerror(errno),
        "); an fd: address can be used once: its first Connect or Listen takes the descriptor"));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(address, ": descriptor ", fd, " is ", FileKind(st.st_mode), ", not a socket"));
  }
  if (SocketOption(fd, SO_DOMAIN) != AF_UNIX) {
    return absl::InvalidArgumentError(absl::StrCat(
        address, ": descriptor ", fd, " is not a Unix-domain socket (fd: takes an end of a socketpair)"));
  }
  if (SocketOption(fd, SO_TYPE) != SOCK_STREAM) {
    return absl::InvalidArgumentError(
        absl::StrCat(address, ": descriptor ", fd, " is not a stream socket (SOCK_STREAM)"));
  }
  if (SocketOption(fd, SO_ACCEPTCONN) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        address, ": descriptor ", fd, " is a listening socket; fd: takes a connected one"));
  }
  sockaddr_un name{};
  socklen_t name_len = sizeof(name);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&name), &name_len) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(address, ": descriptor ", fd, " is not connected (", std::strerror(errno), ")"));
  }
  const int moved = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (moved < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat(address, ": cannot take descriptor ", fd, ": ", std::strerror(errno)));
  }
  close(fd);
  const int flags = fcntl(moved, F_GETFL, 0);
  fcntl(moved, F_SETFL, flags | O_NONBLOCK);
  return moved;
}

absl::StatusOr<std::unique_ptr<Listener>> ListenOnInheritedSocket(
    absl::string_view address, const TransportOptions& options, AcceptCallback on_accept,
    std::shared_ptr<StreamUpgrader> upgrader) {
  absl::StatusOr<int> fd = TakeInheritedSocket(address);
  if (!fd.ok()) return fd.status();
  EventLoop* loop = EventLoopPool::Get().Next();
  auto waiter = std::make_shared<FirstBytesWaiter>(*fd, std::string(address), loop, options,
                                                   std::move(upgrader), std::move(on_accept));
  absl::Status added = loop->Add(*fd, EPOLLIN | EPOLLRDHUP, waiter);
  if (!added.ok()) {
    close(*fd);
    return added;
  }
  return std::unique_ptr<Listener>(
      new InheritedSocketListener(*fd, std::string(address), loop, std::move(waiter)));
}

}  // namespace locus::internal
