#include "transports/shm/shm_transport.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "locus/wire.pb.h"
#include "transports/shm/shm_connection.h"
#include "transports/shm/shm_layout.h"
#include "transports/socket/fd_passing.h"

namespace locus {
namespace {

using internal::kShmHeaderSize;
using internal::ShmMapping;
using internal::ShmRegionHeader;

constexpr uint32_t kMaxSetupMeta = 1024;
constexpr unsigned kRequiredSeals = F_SEAL_SHRINK | F_SEAL_GROW;

uint64_t RingCapacityFor(uint64_t requested) {
  uint64_t capacity = internal::kMinRingCapacity;
  while (capacity < requested && capacity < internal::kMaxRingCapacity) capacity <<= 1;
  return capacity;
}

uint64_t BulkCapacityFor(uint64_t requested) {
  requested = std::min(requested, internal::kMaxBulkCapacity);
  return (requested + internal::kBulkGranule - 1) / internal::kBulkGranule * internal::kBulkGranule;
}

// A fresh region's seal key (shm_layout.h): what keeps bytes that a third
// party got into a ring (a payload) from passing for a record's seal, so it
// must be unguessable. From the kernel's generator (getrandom, else
// /dev/urandom); without either, UNAVAILABLE: no shared-memory connection
// (a channel that found shm by itself stays on its other transport).
absl::StatusOr<uint64_t> NewSealKey() {
  uint64_t key = 0;
  if (getrandom(&key, sizeof(key), GRND_NONBLOCK) != static_cast<ssize_t>(sizeof(key))) {
    const int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    const bool read_all = fd >= 0 && read(fd, &key, sizeof(key)) == static_cast<ssize_t>(sizeof(key));
    const int err = errno;
    if (fd >= 0) close(fd);
    if (!read_all) {
      return absl::UnavailableError(absl::StrCat("no random seal key for a shared-memory region: ",
                                                 err != 0 ? std::strerror(err) : "short read"));
    }
  }
  return key | internal::kShmSealKeyMark;
}

internal::ShmGeometry GeometryOf(const wire::ShmSetup& setup) {
  return internal::ShmGeometry{setup.ring_capacity(), setup.bulk_capacity()};
}

std::string EncodeFrame(FrameType type, const std::string& meta) {
  FrameHeader header = FrameHeader::Make(type, 0, 0);
  header.meta_length = static_cast<uint32_t>(meta.size());
  return std::string(reinterpret_cast<const char*>(&header), sizeof(header)) + meta;
}

class ShmUpgrader final : public internal::StreamUpgrader {
 public:
  absl::StatusOr<std::unique_ptr<Connection>> Upgrade(int fd, PeerInfo peer,
                                                      const TransportOptions& options) override {
    int memfd = -1;
    absl::StatusOr<std::pair<std::unique_ptr<ShmMapping>, internal::ShmGeometry>> mapping =
        Accept(fd, &memfd);
    if (memfd >= 0) close(memfd);
    wire::ShmSetupReply reply;
    if (!mapping.ok()) reply.set_error(std::string(mapping.status().message()));
    absl::Status sent = internal::SendWithFd(fd, EncodeFrame(FrameType::kTransportSetup, reply.SerializeAsString()), -1);
    if (!mapping.ok() || !sent.ok()) {
      close(fd);
      return mapping.ok() ? sent : mapping.status();
    }
    peer.transport = "shm";
    if (peer.has_credentials) peer.remote_address = absl::StrCat("shm:pid=", peer.pid);
    return std::unique_ptr<Connection>(internal::ShmConnection::Create(
        fd, std::move(mapping->first), /*client_side=*/false, mapping->second, std::move(peer),
        options));
  }

 private:
  // Reads the setup frame and its memfd, and validates both. The peer is
  // untrusted: the fd must be a sealed memfd of exactly the announced size,
  // so that it can neither shrink under us (SIGBUS) nor be something else.
  absl::StatusOr<std::pair<std::unique_ptr<ShmMapping>, internal::ShmGeometry>> Accept(int fd,
                                                                                   int* memfd) {
    FrameHeader header{};
    if (recv(fd, &header, sizeof(header), MSG_PEEK | MSG_DONTWAIT) != sizeof(header) ||
        header.meta_length > kMaxSetupMeta || header.payload_length != 0) {
      return absl::InvalidArgumentError("malformed shared-memory setup frame");
    }
    std::string frame(sizeof(header) + header.meta_length, '\0');
    iovec iov{frame.data(), frame.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
      if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
        if (*memfd < 0) {
          *memfd = received;
        } else {
          close(received);  // only one fd is expected
        }
      }
    }
    if (n != static_cast<ssize_t>(frame.size()) || (msg.msg_flags & MSG_CTRUNC)) {
      return absl::InvalidArgumentError("truncated shared-memory setup frame");
    }
    if (*memfd < 0) return absl::InvalidArgumentError("shared-memory setup carried no memfd");
    absl::StatusOr<wire::ShmSetup> parsed =
        ParseShmSetup(absl::string_view(frame.data() + sizeof(header), header.meta_length));
    if (!parsed.ok()) return parsed.status();
    const wire::ShmSetup& setup = *parsed;
    struct stat st;
    if (fstat(*memfd, &st) != 0 || !S_ISREG(st.st_mode) ||
        static_cast<uint64_t>(st.st_size) != setup.region_size()) {
      return absl::InvalidArgumentError("shared-memory fd is not a region of the announced size");
    }
    int seals = fcntl(*memfd, F_GET_SEALS);
    if (seals < 0 || (static_cast<unsigned>(seals) & kRequiredSeals) != kRequiredSeals) {
      return absl::InvalidArgumentError("shared-memory fd is not a sealed memfd");
    }
    absl::StatusOr<std::unique_ptr<ShmMapping>> mapping = ShmMapping::Map(*memfd, setup.region_size());
    if (!mapping.ok()) return mapping.status();
    absl::StatusOr<internal::ShmGeometry> geometry =
        ValidateShmRegionHeader(*reinterpret_cast<const ShmRegionHeader*>((*mapping)->data()), setup);
    if (!geometry.ok()) return geometry.status();
    return std::make_pair(std::move(*mapping), *geometry);
  }
};

class RenamedListener final : public Listener {
 public:
  RenamedListener(std::unique_ptr<Listener> inner, std::string address)
      : inner_(std::move(inner)), address_(std::move(address)) {}
  std::string address() const override { return address_; }

 private:
  std::unique_ptr<Listener> inner_;
  std::string address_;
};

}  // namespace

absl::StatusOr<wire::ShmSetup> ParseShmSetup(absl::string_view meta) {
  wire::ShmSetup setup;
  if (!setup.ParseFromArray(meta.data(), static_cast<int>(meta.size()))) {
    return absl::InvalidArgumentError("malformed shared-memory setup");
  }
  uint64_t capacity = setup.ring_capacity();
  uint64_t bulk = setup.bulk_capacity();
  if (setup.layout_version() != internal::kShmLayoutVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("unsupported shared-memory layout version ", setup.layout_version()));
  }
  // Each term is bounded first, so the sum cannot overflow.
  if (capacity < internal::kMinRingCapacity || capacity > internal::kMaxRingCapacity ||
      (capacity & (capacity - 1)) != 0 || bulk > internal::kMaxBulkCapacity ||
      bulk % internal::kBulkGranule != 0 ||
      setup.region_size() != kShmHeaderSize + 2 * capacity + 2 * bulk) {
    return absl::InvalidArgumentError("bad shared-memory ring geometry");
  }
  return setup;
}

absl::StatusOr<internal::ShmGeometry> ValidateShmRegionHeader(const internal::ShmRegionHeader& region,
                                                              const wire::ShmSetup& setup) {
  if (region.magic != internal::kShmMagic || region.version != internal::kShmLayoutVersion ||
      region.ring_capacity != setup.ring_capacity() || region.region_size != setup.region_size() ||
      region.bulk_capacity != setup.bulk_capacity()) {
    return absl::InvalidArgumentError("shared-memory region header does not match the setup");
  }
  internal::ShmGeometry geometry = GeometryOf(setup);
  geometry.seal_key = region.seal_key;  // read once: the check and the use see one value
  if ((geometry.seal_key & internal::kShmSealKeyMark) == 0) {
    return absl::InvalidArgumentError("shared-memory region header has an invalid seal key");
  }
  return geometry;
}

std::string ShmToUnixAddress(absl::string_view address) {
  if (absl::StartsWith(address, "shm:")) return absl::StrCat("unix:", address.substr(4));
  if (absl::StartsWith(address, "shm-abstract:")) {
    return absl::StrCat("unix-abstract:", address.substr(strlen("shm-abstract:")));
  }
  if (absl::StartsWith(address, "shm-fd:")) return absl::StrCat("fd:", address.substr(strlen("shm-fd:")));
  return "";
}

ShmTransport::ShmTransport()
    : upgrader_(std::make_shared<ShmUpgrader>()), unix_(std::make_shared<UnixTransport>(upgrader_)) {}

absl::StatusOr<std::unique_ptr<Listener>> ShmTransport::Listen(absl::string_view address,
                                                               const TransportOptions& options,
                                                               AcceptCallback on_accept) {
  std::string unix_address = ShmToUnixAddress(address);
  if (unix_address.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("not a shm address: \"", address, "\""));
  }
  auto listener = unix_->Listen(unix_address, options, std::move(on_accept));
  if (!listener.ok()) return listener.status();
  return std::unique_ptr<Listener>(new RenamedListener(std::move(*listener), std::string(address)));
}

absl::StatusOr<std::unique_ptr<Connection>> ShmTransport::Connect(absl::string_view address,
                                                                  const TransportOptions& options,
                                                                  absl::Time deadline) {
  std::string unix_address = ShmToUnixAddress(address);
  if (unix_address.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("not a shm address: \"", address, "\""));
  }
  // Connected (or, for "shm-fd:N", taken) first: Connect owns the socket
  // whatever fails next.
  absl::StatusOr<int> fd = internal::ConnectUnixSocket(unix_address, deadline);
  if (!fd.ok()) return fd.status();
  absl::StatusOr<uint64_t> seal_key = NewSealKey();
  if (!seal_key.ok()) {
    close(*fd);
    return seal_key.status();
  }
  const uint64_t capacity = RingCapacityFor(options.shm_ring_bytes);
  const uint64_t bulk_capacity = BulkCapacityFor(options.shm_bulk_bytes);
  const uint64_t region_size = kShmHeaderSize + 2 * capacity + 2 * bulk_capacity;
  auto fail = [&](absl::Status status) {
    close(*fd);
    return status;
  };
  int memfd = memfd_create("locus-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (memfd < 0) return fail(absl::UnavailableError(absl::StrCat("memfd_create: ", std::strerror(errno))));
  if (ftruncate(memfd, static_cast<off_t>(region_size)) != 0 ||
      fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int err = errno;
    close(memfd);
    return fail(absl::UnavailableError(absl::StrCat("preparing the shared-memory region: ", std::strerror(err))));
  }
  absl::StatusOr<std::unique_ptr<ShmMapping>> mapping = ShmMapping::Map(memfd, region_size);
  if (!mapping.ok()) {
    close(memfd);
    return fail(mapping.status());
  }
  // A fresh memfd is zero-filled: indices and futex words start at 0.
  auto* region = new ((*mapping)->data()) ShmRegionHeader();
  region->magic = internal::kShmMagic;
  region->version = internal::kShmLayoutVersion;
  region->ring_capacity = capacity;
  region->region_size = region_size;
  region->bulk_capacity = bulk_capacity;
  region->seal_key = *seal_key;

  wire::ShmSetup setup;
  setup.set_layout_version(internal::kShmLayoutVersion);
  setup.set_ring_capacity(capacity);
  setup.set_region_size(region_size);
  setup.set_bulk_capacity(bulk_capacity);
  absl::Status sent = internal::SendWithFd(*fd, EncodeFrame(FrameType::kTransportSetup, setup.SerializeAsString()), memfd);
  close(memfd);
  if (!sent.ok()) return fail(sent);

  FrameHeader header{};
  absl::Status read = internal::ReadExactly(*fd, reinterpret_cast<char*>(&header), sizeof(header), deadline);
  if (!read.ok()) {
    if (absl::IsUnavailable(read)) {  // e.g. a server without shared-memory support
      read = absl::UnavailableError(
          absl::StrCat("server at ", address, " does not accept shared memory (", read.message(), ")"));
    }
    return fail(read);
  }
  if (header.magic != kFrameMagic || header.type != static_cast<uint8_t>(FrameType::kTransportSetup) ||
      header.meta_length > kMaxSetupMeta || header.payload_length != 0) {
    return fail(absl::UnavailableError(
        absl::StrCat("server at ", address, " answered shared-memory setup with ", DescribeFrameHeader(header))));
  }
  std::string meta(header.meta_length, '\0');
  read = internal::ReadExactly(*fd, meta.data(), meta.size(), deadline);
  if (!read.ok()) return fail(read);
  wire::ShmSetupReply reply;
  if (!reply.ParseFromString(meta)) return fail(absl::UnavailableError("malformed shared-memory setup reply"));
  if (!reply.error().empty()) {
    return fail(absl::UnavailableError(absl::StrCat("server refused shared memory: ", reply.error())));
  }
  PeerInfo peer = internal::DescribeUnixPeer(*fd);
  peer.transport = "shm";
  peer.remote_address = std::string(address);
  return std::unique_ptr<Connection>(internal::ShmConnection::Create(
      *fd, std::move(*mapping), /*client_side=*/true, internal::ShmGeometry{capacity, bulk_capacity, *seal_key},
      std::move(peer), options));
}

}  // namespace locus
