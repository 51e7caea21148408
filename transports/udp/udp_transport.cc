#include "transports/udp/udp_transport.h"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/log.h"
#include "locus/wire.pb.h"
#include "transports/socket/event_loop.h"
#include "transports/socket/inet_address.h"
#include "transports/udp/datagram_codec.h"
#include "transports/udp/datagram_connection.h"

namespace locus {
namespace {

// Socket buffers: bursts of pipelined calls should not be dropped by a
// default-sized (~200 KiB) receive buffer. Best effort: capped by
// net.core.rmem_max / wmem_max.
constexpr int kSocketBufferBytes = 4 << 20;

void SizeBuffers(int fd) {
  int bytes = kSocketBufferBytes;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
}

PeerInfo DescribeUdpPeer(int fd) {
  PeerInfo peer;
  peer.transport = "udp";
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    peer.remote_address = internal::FormatInetAddress(ss, "udp");
  }
  len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    peer.local_address = internal::FormatInetAddress(ss, "udp");
  }
  return peer;
}

// A RESPONSE failing call `call_id`, which the listener dropped unprocessed.
std::string NotProcessedDatagram(uint64_t call_id) {
  wire::CallStatus status;
  status.set_code(static_cast<int>(absl::StatusCode::kUnavailable));
  status.set_message("no UDP session (server restarted or session expired): not processed");
  std::string meta = status.SerializeAsString();
  FrameHeader header = FrameHeader::Make(FrameType::kResponse, 0, call_id);
  header.meta_length = static_cast<uint32_t>(meta.size());
  return std::string(reinterpret_cast<const char*>(&header), sizeof(header)) + meta;
}

// A GOAWAY frame that claims nothing about which calls were processed (the
// listener does not know), as one datagram.
std::string GoAwayDatagram(absl::StatusCode code, absl::string_view reason) {
  wire::GoAway goaway;
  goaway.set_last_processed_call_id(~uint64_t{0});
  goaway.set_code(static_cast<int>(code));
  goaway.set_reason(std::string(reason));
  std::string meta = goaway.SerializeAsString();
  FrameHeader header = FrameHeader::Make(FrameType::kGoAway, 0, 0);
  header.meta_length = static_cast<uint32_t>(meta.size());
  return std::string(reinterpret_cast<const char*>(&header), sizeof(header)) + meta;
}

// The listening socket: turns each new peer's HELLO into a connection of
// its own (see udp_transport.h). Runs on an event loop thread.
class UdpListenSocket final : public internal::FdHandler,
                              public std::enable_shared_from_this<UdpListenSocket> {
 public:
  UdpListenSocket(int fd, sockaddr_storage bound, socklen_t bound_length, std::string address,
                  TransportOptions options, AcceptCallback on_accept)
      : fd_(fd),
        bound_(bound),
        bound_length_(bound_length),
        address_(std::move(address)),
        options_(std::move(options)),
        on_accept_(std::move(on_accept)) {}
  ~UdpListenSocket() override { close(fd_); }

  int fd() const { return fd_; }
  const std::string& address() const { return address_; }

  void OnEvents(uint32_t) override {
    for (int i = 0; i < 64; ++i) {
      sockaddr_storage from{};
      socklen_t from_length = sizeof(from);
      ssize_t n = recvfrom(fd_, buffer_, sizeof(buffer_), MSG_DONTWAIT | MSG_TRUNC,
                           reinterpret_cast<sockaddr*>(&from), &from_length);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;  // EAGAIN, or an error about an earlier datagram we sent: nothing to do
      }
      if (static_cast<size_t>(n) > sizeof(buffer_)) continue;  // too large for any frame: drop
      OnDatagram(absl::string_view(buffer_, static_cast<size_t>(n)), from, from_length);
    }
  }

  // No session starts once this returns (the listener is going away).
  void Stop() {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    mu_.Await(absl::Condition(
        +[](int* handoffs) { return *handoffs == 0; }, &handoffs_in_progress_));
  }

 private:
  void OnDatagram(absl::string_view datagram, const sockaddr_storage& from, socklen_t from_length) {
    FrameHeader header{};
    if (datagram.size() < sizeof(header)) return;  // not a Locus peer: ignore
    std::memcpy(&header, datagram.data(), sizeof(header));
    if (header.magic != kFrameMagic) return;
    const std::string key(reinterpret_cast<const char*>(&from), from_length);
    {
      absl::MutexLock lock(&mu_);
      ForgetEndedSessionsLocked();
      // A datagram of a known peer that reached this socket before the
      // peer's own socket was connected: datagrams may be lost; drop it.
      if (peers_.contains(key)) return;
    }
    if (header.frame_type() != FrameType::kHello) {
      // No session: a REQUEST dropped here was not processed (its call
      // fails UNAVAILABLE at once); GOAWAY tells the client to reconnect,
      // claiming nothing about its other calls (last id: the maximum).
      // Only REQUEST and PING are answered, tersely: no reflection of
      // arbitrary datagrams, and never a reply to a reply.
      if (header.frame_type() == FrameType::kRequest && (header.flags & kFlagOneway) == 0 &&
          header.call_id != 0) {
        Reply(NotProcessedDatagram(header.call_id), from, from_length);
      }
      if (header.frame_type() == FrameType::kRequest || header.frame_type() == FrameType::kPing) {
        Reply(GoAwayDatagram(absl::StatusCode::kUnavailable, "no UDP session"), from, from_length);
      }
      return;
    }
    StartSession(datagram, from, from_length);
  }

 public:
  // A HELLO that a live session of the same address received (see
  // DatagramConnection::NewSessionHandoff); that session has closed and
  // released the address. Runs on that session's delivering thread.
  void HandOff(std::string hello, const sockaddr_storage& from, socklen_t from_length) {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      ++handoffs_in_progress_;
    }
    StartSession(hello, from, from_length);
    absl::MutexLock lock(&mu_);
    --handoffs_in_progress_;
  }

 private:
  void ForgetEndedSessionsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto it = peers_.begin(); it != peers_.end();) {
      auto current = it++;
      if (current->second.expired()) peers_.erase(current);
    }
    replaced_.erase(std::remove_if(replaced_.begin(), replaced_.end(),
                                   [](const std::weak_ptr<bool>& lease) { return lease.expired(); }),
                    replaced_.end());
  }

  // A session for the peer at `from`, whose HELLO is `hello`; it replaces
  // the address's previous session, if any.
  void StartSession(absl::string_view hello, const sockaddr_storage& from, socklen_t from_length) {
    const std::string key(reinterpret_cast<const char*>(&from), from_length);
    size_t live;
    {
      absl::MutexLock lock(&mu_);
      ForgetEndedSessionsLocked();
      // A session being replaced lives on until its connection is
      // released: it still counts (in replaced_ once the new one exists).
      live = peers_.size() + replaced_.size();
    }
    if (live >= static_cast<size_t>(kMaxUdpPeers)) {
      Reply(GoAwayDatagram(absl::StatusCode::kResourceExhausted,
                           absl::StrCat("this UDP listener serves at most ", kMaxUdpPeers, " peers")),
            from, from_length);
      return;
    }
    int peer_fd = socket(from.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (peer_fd < 0) {
      LOCUS_LOG(WARNING) << "UDP listener " << address_ << ": socket: " << std::strerror(errno);
      return;
    }
    int one = 1;
    setsockopt(peer_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(peer_fd, reinterpret_cast<const sockaddr*>(&bound_), bound_length_) != 0 ||
        connect(peer_fd, reinterpret_cast<const sockaddr*>(&from), from_length) != 0) {
      LOCUS_LOG(WARNING) << "UDP listener " << address_ << ": cannot open a socket for "
                         << internal::FormatInetAddress(from, "udp") << ": " << std::strerror(errno);
      close(peer_fd);
      return;
    }
    SizeBuffers(peer_fd);
    TakeBackOthersDatagrams(peer_fd, from, from_length);
    auto lease = std::make_shared<bool>(true);
    {
      absl::MutexLock lock(&mu_);
      std::weak_ptr<bool>& slot = peers_[key];
      if (!slot.expired()) replaced_.push_back(std::move(slot));
      slot = lease;
    }
    std::weak_ptr<UdpListenSocket> listener = weak_from_this();
    auto hand_off = [listener, from, from_length](std::string next_hello) {
      if (auto socket = listener.lock()) socket->HandOff(std::move(next_hello), from, from_length);
    };
    on_accept_(internal::DatagramConnection::Create(peer_fd, DescribeUdpPeer(peer_fd), options_,
                                                    std::string(hello), /*probe_peer=*/false,
                                                    kUdpIdleTimeout, lease, std::move(hand_off)));
  }

  // Between bind() and connect() a peer's new socket matched every sender
  // as much as the listening one: what others sent it then is handled as
  // if the listener had received it (the peer's own datagrams stay).
  void TakeBackOthersDatagrams(int peer_fd, const sockaddr_storage& peer, socklen_t peer_length) {
    for (int i = 0; i < 64; ++i) {
      sockaddr_storage sender{};
      socklen_t sender_length = sizeof(sender);
      char first;
      const ssize_t size = recvfrom(peer_fd, &first, 1, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC,
                                    reinterpret_cast<sockaddr*>(&sender), &sender_length);
      if (size < 0) return;
      if (sender_length == peer_length && std::memcmp(&sender, &peer, peer_length) == 0) return;
      std::string datagram(std::min<size_t>(static_cast<size_t>(size), internal::kMaxDatagramBytes + 1), '\0');
      const ssize_t taken = recvfrom(peer_fd, datagram.data(), datagram.size(), MSG_DONTWAIT,
                                     reinterpret_cast<sockaddr*>(&sender), &sender_length);
      if (taken < 0) return;
      if (static_cast<size_t>(size) > internal::kMaxDatagramBytes) continue;  // too large: drop
      datagram.resize(static_cast<size_t>(taken));
      OnDatagram(datagram, sender, sender_length);
    }
  }

  void Reply(const std::string& datagram, const sockaddr_storage& to, socklen_t to_length) {
    (void)sendto(fd_, datagram.data(), datagram.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                 reinterpret_cast<const sockaddr*>(&to), to_length);
  }

  const int fd_;
  const sockaddr_storage bound_;
  const socklen_t bound_length_;
  const std::string address_;
  const TransportOptions options_;
  // Called on the loop thread, and by a session handing off a new one
  // (HandOff); Server's callback is thread-safe.
  AcceptCallback on_accept_;
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int handoffs_in_progress_ ABSL_GUARDED_BY(mu_) = 0;
  // Live peers by source address; expired leases are connections gone.
  absl::flat_hash_map<std::string, std::weak_ptr<bool>> peers_ ABSL_GUARDED_BY(mu_);
  // Sessions a new client on the same address replaced, until released.
  std::vector<std::weak_ptr<bool>> replaced_ ABSL_GUARDED_BY(mu_);
  char buffer_[internal::kMaxDatagramBytes + 1];  // loop thread only
};

class UdpListener final : public Listener {
 public:
  UdpListener(std::shared_ptr<UdpListenSocket> socket, internal::EventLoop* loop)
      : socket_(std::move(socket)), loop_(loop) {}
  ~UdpListener() override {
    loop_->Remove(socket_->fd());  // no OnDatagram after this
    socket_->Stop();               // nor a handoff
  }
  std::string address() const override { return socket_->address(); }

 private:
  const std::shared_ptr<UdpListenSocket> socket_;
  internal::EventLoop* const loop_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Listener>> UdpTransport::Listen(absl::string_view address,
                                                               const TransportOptions& options,
                                                               AcceptCallback on_accept) {
  auto resolved = internal::ResolveInetAddress(address, "udp", SOCK_DGRAM, /*passive=*/true);
  if (!resolved.ok()) return resolved.status();
  absl::Status last = absl::UnavailableError(absl::StrCat("no usable address for ", address));
  for (addrinfo* ai = resolved->get(); ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    // Every peer's own socket binds the same address (udp_transport.h),
    // and a restarted server must bind while the old one's peer sockets
    // may still linger: SO_REUSEADDR. Hazard: another socket with it set
    // can bind the port too (documented in udp_transport.h).
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      last = absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", std::strerror(errno)));
      close(fd);
      continue;
    }
    SizeBuffers(fd);
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
    // Not make_shared: sessions hold weak references (for a handoff) for
    // up to kUdpIdleTimeout, and its receive buffer should not wait for them.
    std::shared_ptr<UdpListenSocket> socket(new UdpListenSocket(
        fd, bound, length, internal::FormatInetAddress(bound, "udp"), options, std::move(on_accept)));
    internal::EventLoop* loop = internal::EventLoopPool::Get().Next();
    absl::Status added = loop->Add(fd, EPOLLIN, socket);
    if (!added.ok()) return added;
    return std::unique_ptr<Listener>(std::make_unique<UdpListener>(std::move(socket), loop));
  }
  return last;
}

absl::StatusOr<std::unique_ptr<Connection>> UdpTransport::Connect(absl::string_view address,
                                                                  const TransportOptions& options,
                                                                  absl::Time deadline) {
  (void)deadline;  // connecting a UDP socket does not wait; the handshake has the deadline
  auto resolved = internal::ResolveInetAddress(address, "udp", SOCK_DGRAM, /*passive=*/false);
  if (!resolved.ok()) return resolved.status();
  absl::Status last = absl::UnavailableError(absl::StrCat("no usable address for ", address));
  for (addrinfo* ai = resolved->get(); ai != nullptr; ai = ai->ai_next) {
    // Blocking: a caller reading its own reply (DriveUntil) blocks in recv,
    // bounded by SO_RCVTIMEO; every other read and write passes MSG_DONTWAIT.
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    timeval receive_timeout{0, 20000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &receive_timeout, sizeof(receive_timeout));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      last = absl::UnavailableError(absl::StrCat("cannot reach ", address, ": ", std::strerror(errno)));
      close(fd);
      continue;
    }
    SizeBuffers(fd);
    // Idle sessions end here at half the server's timeout (see Check()).
    return internal::DatagramConnection::Create(fd, DescribeUdpPeer(fd), options, "",
                                                /*probe_peer=*/true, kUdpIdleTimeout / 2);
  }
  return last;
}

}  // namespace locus
