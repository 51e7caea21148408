// Raw IPC baselines: the floor each Locus transport is compared against.
//   unix  - Unix stream socket, blocking read/write of `size` bytes each way
//   tcp   - TCP loopback with TCP_NODELAY, same
//           unix/tcp variant "epoll": the server waits in epoll_wait and
//           reads without blocking, as an event-loop server does (one
//           more system call per request): the floor of any such server;
//           variant "poll": client and server busy-poll with non-blocking
//           reads, never sleeping (what a reader that polls can reach)
//   udp   - connected UDP datagrams (size <= 65507); variant "poll": both
//           sides receive without blocking, in a loop
//   shm   - two SPSC rings in a memfd shared with the server; variant "spin"
//           (both sides spin) or "adaptive" (spin 60 us, then futex), both
//           polling the producer's index; "sealed": both sides spin on the
//           header of the next message instead (spsc_ring.h), the shortest
//           path a message can take between two cores
//   inproc - no server process: a virtual call (not devirtualizable) that
//           copies the request bytes into the reply string, i.e. the work
//           of the echo handler without any RPC machinery
// unix/tcp also run with outstanding > 1 (requests pipelined on one
// connection, replies in order), for throughput comparisons.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "harness/spsc_ring.h"
#include "harness/systems.h"

namespace locus_bench {
namespace {

// Adaptive shm: spin this long before sleeping on the futex. It must exceed
// the time the peer needs to be woken and answer (a cross-core futex wake is
// ~20-25 us on these VMs, see docs/performance-notes.md); with a 20 us budget
// both sides settle into sleeping on every message (~50 us round trips).
constexpr int64_t kAdaptiveSpinNs = 60000;
constexpr size_t kMaxUdp = 65507;
constexpr size_t kMaxPipelinedBytes = 128 << 10;  // N * size: stays within socket buffers

std::string Errno(const char* what) { return std::string(what) + ": " + strerror(errno); }

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= w;
  }
  return true;
}
bool ReadAll(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= r;
  }
  return true;
}

// ReadAll busy-polling: non-blocking reads until `n` bytes came.
bool PollAll(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) return false;
    p += r;
    n -= r;
  }
  return true;
}

bool ParseInet(const std::string& hostport, sockaddr_in* sa) {
  size_t colon = hostport.rfind(':');
  if (colon == std::string::npos) return false;
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons(static_cast<uint16_t>(atoi(hostport.c_str() + colon + 1)));
  return inet_pton(AF_INET, hostport.substr(0, colon).c_str(), &sa->sin_addr) == 1;
}

// "unix:/p" | "tcp://h:p" | "udp://h:p" -> a socket address.
bool ParseAddress(const std::string& address, sockaddr_storage* ss, socklen_t* len, int* family,
                  std::string* err) {
  memset(ss, 0, sizeof *ss);
  if (address.rfind("unix:", 0) == 0) {
    auto* un = reinterpret_cast<sockaddr_un*>(ss);
    std::string path = address.substr(5);
    if (path.size() >= sizeof un->sun_path) {
      *err = "unix path too long";
      return false;
    }
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path.c_str(), path.size() + 1);
    *len = sizeof(sockaddr_un);
    *family = AF_UNIX;
    return true;
  }
  for (const char* scheme : {"tcp://", "udp://"}) {
    if (address.rfind(scheme, 0) == 0) {
      if (!ParseInet(address.substr(6), reinterpret_cast<sockaddr_in*>(ss))) {
        *err = "bad address " + address + " (raw baselines take IPv4 host:port)";
        return false;
      }
      *len = sizeof(sockaddr_in);
      *family = AF_INET;
      return true;
    }
  }
  *err = "raw baseline cannot use address " + address;
  return false;
}

std::string InetAddressOf(int fd, const char* scheme) {
  sockaddr_in sa;
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  char host[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
  return std::string(scheme) + host + ":" + std::to_string(ntohs(sa.sin_port));
}

// ---- Shared memory segment ---------------------------------------------

struct ShmLayout {
  size_t capacity;  // per ring
  size_t total;
  static ShmLayout For(size_t size) {
    size_t cap = 1 << 20;
    while (cap < 4 * SpscRing::Footprint(size)) cap <<= 1;
    return {cap, 2 * (4096 + cap)};
  }
};

struct ShmRings {
  std::unique_ptr<SpscRing> to_server;
  std::unique_ptr<SpscRing> to_client;
  void* base = nullptr;
  size_t total = 0;
  ~ShmRings() {
    if (base != nullptr) munmap(base, total);
  }
};

bool MapRings(int fd, size_t size, bool sealed, ShmRings* rings, std::string* err) {
  ShmLayout layout = ShmLayout::For(size);
  void* base = mmap(nullptr, layout.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    *err = Errno("mmap");
    return false;
  }
  auto* bytes = static_cast<uint8_t*>(base);
  size_t half = 4096 + layout.capacity;
  rings->base = base;
  rings->total = layout.total;
  rings->to_server = std::make_unique<SpscRing>(reinterpret_cast<RingControl*>(bytes),
                                                bytes + 4096, layout.capacity, sealed);
  rings->to_client = std::make_unique<SpscRing>(reinterpret_cast<RingControl*>(bytes + half),
                                                bytes + half + 4096, layout.capacity, sealed);
  return true;
}

int g_shm_fd = -1;  // client side: the memfd of the current case

bool RawPrepare(const CaseSpec& spec, int* keep_fd, std::vector<std::string>* args,
                std::string* err) {
  if (spec.transport != "shm") return true;
  int fd = memfd_create("locus-bench-shm", 0);  // no CLOEXEC: the server inherits it
  if (fd < 0) {
    *err = Errno("memfd_create");
    return false;
  }
  if (ftruncate(fd, ShmLayout::For(spec.size).total) != 0) {
    *err = Errno("ftruncate");
    close(fd);
    return false;
  }
  g_shm_fd = fd;
  *keep_fd = fd;
  args->push_back("--shm-fd=" + std::to_string(fd));
  return true;
}

void RawCleanup() {
  if (g_shm_fd >= 0) close(g_shm_fd);
  g_shm_fd = -1;
}

uint64_t NowNsFn() { return NowNs(); }

// ---- Server ------------------------------------------------------------

void StreamEcho(int fd, size_t size) {
  std::vector<char> buf(size);
  while (ReadAll(fd, buf.data(), size) && WriteAll(fd, buf.data(), size)) {
  }
  close(fd);
}

void StreamEchoPoll(int fd, size_t size) {
  std::vector<char> buf(size);
  while (PollAll(fd, buf.data(), size) && WriteAll(fd, buf.data(), size)) {
  }
  close(fd);
}

// StreamEcho as an event-loop server does it: epoll_wait (level-triggered),
// then a non-blocking read; a complete request is echoed with a blocking
// write, as before.
void StreamEchoEpoll(int fd, size_t size) {
  std::vector<char> buf(size);
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.fd = fd;
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    perror("raw epoll server: epoll");
    close(fd);
    if (ep >= 0) close(ep);
    return;
  }
  size_t have = 0;
  for (bool open = true; open;) {
    epoll_event ready[1];
    const int n = epoll_wait(ep, ready, 1, -1);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    const ssize_t got = recv(fd, buf.data() + have, size - have, MSG_DONTWAIT);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) break;
    if (got < 0) continue;
    have += static_cast<size_t>(got);
    if (have == size) {
      open = WriteAll(fd, buf.data(), size);
      have = 0;
    }
  }
  close(ep);
  close(fd);
}

int RawServe(const Flags& flags) {
  std::string transport = flags.at("transport");
  size_t size = std::stoul(flags.at("size"));
  std::string variant = flags.count("variant") ? flags.at("variant") : "";
  std::string address = flags.count("address") ? flags.at("address") : "";
  std::string err;
  if (transport == "shm") {
    static ShmRings rings;
    if (!MapRings(std::stoi(flags.at("shm-fd")), size, variant == "sealed", &rings, &err)) {
      fprintf(stderr, "raw shm server: %s\n", err.c_str());
      return 1;
    }
    int64_t spin = variant == "adaptive" ? kAdaptiveSpinNs : -1;
    std::thread([size, spin] {
      std::vector<char> buf(size + 8);
      static std::atomic<bool> never{false};
      for (;;) {
        if (!rings.to_server->WaitNonEmpty(spin, never, NowNsFn)) return;
        int64_t n = rings.to_server->TryPop(buf.data(), buf.size());
        while (!rings.to_client->TryPush(buf.data(), static_cast<uint32_t>(n))) CpuRelax();
        if (spin >= 0) rings.to_client->NotifyConsumer();
      }
    }).detach();
    ServeControlLoop("shm:memfd");
  }
  sockaddr_storage ss;
  socklen_t len;
  int family;
  if (!ParseAddress(address, &ss, &len, &family, &err)) {
    fprintf(stderr, "raw server: %s\n", err.c_str());
    return 1;
  }
  bool udp = transport == "udp";
  int fd = socket(family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
  if (family == AF_UNIX) unlink(reinterpret_cast<sockaddr_un*>(&ss)->sun_path);
  int one = 1;
  if (family == AF_INET) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || (!udp && listen(fd, 16) != 0)) {
    fprintf(stderr, "raw server: bind/listen %s: %s\n", address.c_str(), strerror(errno));
    return 1;
  }
  if (family == AF_INET) address = InetAddressOf(fd, udp ? "udp://" : "tcp://");
  if (udp) {
    const int receive_flags = variant == "poll" ? MSG_DONTWAIT : 0;
    std::thread([fd, receive_flags] {
      std::vector<char> buf(kMaxUdp);
      for (;;) {
        sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(fd, buf.data(), buf.size(), receive_flags,
                             reinterpret_cast<sockaddr*>(&peer), &plen);
        if (n < 0) continue;
        sendto(fd, buf.data(), n, 0, reinterpret_cast<sockaddr*>(&peer), plen);
      }
    }).detach();
  } else {
    void (*echo)(int, size_t) = variant == "epoll" ? StreamEchoEpoll
                                : variant == "poll"  ? StreamEchoPoll
                                                     : StreamEcho;
    std::thread([fd, size, family, echo] {
      for (;;) {
        int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        if (family == AF_INET) {
          int one = 1;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        std::thread(echo, c, size).detach();
      }
    }).detach();
  }
  ServeControlLoop(address);
}

// ---- Client ------------------------------------------------------------

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

RunResult Fail(std::string error) {
  RunResult r;
  r.error = std::move(error);
  return r;
}

RunResult RunShmClient(const CaseSpec& spec, WindowHooks& hooks) {
  ShmRings rings;
  std::string err;
  if (!MapRings(g_shm_fd, spec.size, spec.variant == "sealed", &rings, &err)) return Fail(err);
  if (spec.outstanding != 1) return Fail("raw shm baseline is ping-pong only (outstanding=1)");
  int64_t spin = spec.variant == "adaptive" ? kAdaptiveSpinNs : -1;
  std::vector<char> req(spec.size, 'x'), resp(spec.size + 8);
  RunResult r = RunSyncLoop(spec, hooks, [&](std::string* e) {
    while (!rings.to_server->TryPush(req.data(), static_cast<uint32_t>(req.size()))) CpuRelax();
    if (spin >= 0) rings.to_server->NotifyConsumer();
    if (!rings.to_client->WaitNonEmpty(spin, g_abort, NowNsFn)) {
      *e = "aborted";
      return false;
    }
    int64_t n = rings.to_client->TryPop(resp.data(), resp.size());
    if (n != static_cast<int64_t>(spec.size)) {
      *e = "short reply";
      return false;
    }
    return true;
  });
  r.transport = "shm";
  return r;
}

// ---- In-process --------------------------------------------------------

class Echoer {
 public:
  virtual ~Echoer() = default;
  virtual void Echo(const std::string& request, std::string* reply) = 0;
};

class CopyEchoer final : public Echoer {
 public:
  void Echo(const std::string& request, std::string* reply) override { reply->assign(request); }
};

RunResult RawInProcess(const CaseSpec& spec, WindowHooks& hooks) {
  static CopyEchoer echoer;
  // Read through a volatile pointer so the compiler cannot see the target
  // and inline it: one indirect call per echo, as a dispatch table would do.
  Echoer* volatile target = &echoer;
  std::string request(spec.size, 'x'), reply;
  RunResult r = RunSyncLoop(spec, hooks, [&](std::string* e) {
    target->Echo(request, &reply);
    if (reply.size() != request.size()) {
      *e = "short reply";
      return false;
    }
    return true;
  });
  r.transport = "inproc";
  return r;
}

RunResult RawClient(const CaseSpec& spec, const std::string& address, WindowHooks& hooks) {
  if (spec.transport == "shm") return RunShmClient(spec, hooks);
  if (spec.transport == "inproc") return RawInProcess(spec, hooks);
  std::string err;
  sockaddr_storage ss;
  socklen_t len;
  int family;
  if (!ParseAddress(address, &ss, &len, &family, &err)) return Fail(err);
  bool udp = spec.transport == "udp";
  if (udp && spec.size > kMaxUdp) return Fail("UDP baseline needs size <= 65507");
  if (udp && spec.outstanding != 1) return Fail("raw udp baseline is ping-pong only (outstanding=1)");
  Fd s;
  s.fd = socket(family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
  if (connect(s.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) return Fail(Errno("connect"));
  int one = 1;
  if (family == AF_INET && !udp) setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (udp) {
    timeval tv = {2, 0};  // a lost datagram fails the case instead of hanging it
    setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  std::vector<char> req(spec.size, 'x'), resp(spec.size);
  const bool poll = spec.variant == "poll";
  RunResult r;
  if (spec.outstanding == 1) {
    r = RunSyncLoop(spec, hooks, [&](std::string* e) {
      if (udp) {
        if (send(s.fd, req.data(), req.size(), 0) != static_cast<ssize_t>(req.size())) {
          *e = Errno("send");
          return false;
        }
        ssize_t got;
        if (poll) {
          // A lost datagram fails the case after 2 s, as SO_RCVTIMEO does below.
          const uint64_t give_up = NowNs() + 2'000'000'000ull;
          do {
            got = recv(s.fd, resp.data(), resp.size(), MSG_DONTWAIT);
          } while (got < 0 && (errno == EAGAIN || errno == EINTR) && NowNs() < give_up);
        } else {
          got = recv(s.fd, resp.data(), resp.size(), 0);
        }
        if (got != static_cast<ssize_t>(resp.size())) {
          *e = Errno("recv");
          return false;
        }
        return true;
      }
      if (!WriteAll(s.fd, req.data(), req.size()) ||
          !(poll ? PollAll : ReadAll)(s.fd, resp.data(), resp.size())) {
        *e = Errno("write/read");
        return false;
      }
      return true;
    });
  } else {
    // Pipelined: requests written under a lock, replies read in order by a
    // reader thread that completes the oldest slot and starts the next call.
    if (spec.size * spec.outstanding > kMaxPipelinedBytes) {
      return Fail("raw pipelined baseline needs size*outstanding <= 128 KiB");
    }
    std::mutex mu;
    std::deque<int> fifo;
    AsyncDriver* driver_ptr = nullptr;
    AsyncDriver driver(spec, [&](int slot) {
      std::lock_guard<std::mutex> lock(mu);
      fifo.push_back(slot);
      if (!WriteAll(s.fd, req.data(), req.size())) {
        fifo.pop_back();
        driver_ptr->Complete(slot, false, Errno("write"));
      }
    });
    driver_ptr = &driver;
    std::thread reader([&] {
      std::vector<char> buf(spec.size);
      while (ReadAll(s.fd, buf.data(), buf.size())) {
        int slot;
        {
          std::lock_guard<std::mutex> lock(mu);
          if (fifo.empty()) continue;
          slot = fifo.front();
          fifo.pop_front();
        }
        driver.Complete(slot, true, "");
      }
      // EOF or error: fail what is in flight.
      std::deque<int> left;
      {
        std::lock_guard<std::mutex> lock(mu);
        left.swap(fifo);
      }
      for (int slot : left) driver.Complete(slot, false, "connection lost");
    });
    r = driver.Run(hooks);
    shutdown(s.fd, SHUT_RDWR);
    reader.join();
  }
  r.transport = spec.transport;
  return r;
}

}  // namespace

System RawSystem() {
  System s;
  s.name = "raw";
  s.transports = {"unix", "tcp", "udp", "shm", "inproc"};
  s.prepare = RawPrepare;
  s.cleanup = RawCleanup;
  s.serve = RawServe;
  s.run_client = RawClient;
  s.run_in_process = RawInProcess;
  return s;
}

}  // namespace locus_bench
