// Thrift baseline (Debian's libthrift 0.17): the same echo as a Thrift
// service (proto/thrift_bench.thrift), binary protocol over a buffered
// transport, TSimpleServer (one connection, requests answered in order).
//   outstanding 1: sync client calls
//   outstanding N: N `send_echo` then N `recv_echo` on one connection
//                  (pipelined batches; a call's latency runs from its send
//                  to its reply), size x N <= 128 KiB (blocking sockets on
//                  both sides: larger batches could deadlock on full buffers)
// Over a Unix socket or TCP loopback (TCP_NODELAY on both ends).
// Built only when CMake finds Thrift (LOCUS_BENCH_HAVE_THRIFT).
#include <cstdio>
#include <string>

#include "harness/systems.h"

#ifdef LOCUS_BENCH_HAVE_THRIFT
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <unistd.h>

#include <atomic>
#include <future>
#include <memory>
#include <thread>

#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/server/TSimpleServer.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TServerSocket.h>
#include <thrift/transport/TSocket.h>

#include "Bench.h"
#include "harness/phased_loop.h"
#endif

namespace locus_bench {

#ifdef LOCUS_BENCH_HAVE_THRIFT
namespace {

using apache::thrift::TException;
using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::protocol::TBinaryProtocolFactory;
using apache::thrift::server::TSimpleServer;
using apache::thrift::transport::TBufferedTransport;
using apache::thrift::transport::TBufferedTransportFactory;
using apache::thrift::transport::TServerSocket;
using apache::thrift::transport::TSocket;
using locus_bench_thrift::BenchClient;
using locus_bench_thrift::BenchIf;
using locus_bench_thrift::BenchProcessor;

class Handler final : public BenchIf {
 public:
  void echo(std::string& _return, const std::string& data) override { _return = data; }
};

// "unix:/path" -> path; "tcp://host:port" -> host, port.
bool ParseAddress(const std::string& address, std::string* path, std::string* host, int* port) {
  if (address.rfind("unix:", 0) == 0) {
    *path = address.substr(5);
    return true;
  }
  if (address.rfind("tcp://", 0) == 0) {
    std::string hp = address.substr(6);
    size_t colon = hp.rfind(':');
    if (colon == std::string::npos) return false;
    *host = hp.substr(0, colon);
    *port = std::stoi(hp.substr(colon + 1));
    return true;
  }
  return false;
}

int ThriftServe(const Flags& flags) {
  static std::string address;
  static std::promise<std::string> ready;
  static std::atomic<int> listen_fd{-1};
  address = flags.at("address");
  std::string path, host;
  int port = 0;
  if (!ParseAddress(address, &path, &host, &port)) {
    fprintf(stderr, "thrift server: bad address %s\n", address.c_str());
    return 1;
  }
  bool tcp = path.empty();
  static std::shared_ptr<TServerSocket> socket =
      tcp ? std::make_shared<TServerSocket>(host, port) : std::make_shared<TServerSocket>(path);
  socket->setInterruptableChildren(false);  // no extra poll() per read
  // Called after bind, before listen: learn the port the kernel picked.
  socket->setListenCallback([tcp, host](THRIFT_SOCKET fd) {
    listen_fd.store(fd);
    if (!tcp) {
      ready.set_value(address);
      return;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    int p = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    ready.set_value("tcp://" + host + ":" + std::to_string(p));
  });
  socket->setAcceptCallback([tcp](THRIFT_SOCKET fd) {
    int one = 1;
    if (tcp) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  });
  static TSimpleServer server(std::make_shared<BenchProcessor>(std::make_shared<Handler>()), socket,
                              std::make_shared<TBufferedTransportFactory>(),
                              std::make_shared<TBinaryProtocolFactory>());
  std::thread([] {
    try {
      server.serve();
    } catch (const std::exception& e) {
      try {
        ready.set_value("ERROR " + std::string(e.what()));
      } catch (const std::future_error&) {
      }
    }
  }).detach();
  std::string actual = ready.get_future().get();
  if (actual.rfind("ERROR ", 0) == 0) {
    fprintf(stderr, "thrift server: cannot listen on %s: %s\n", address.c_str(), actual.c_str() + 6);
    return 1;
  }
  // The callback runs before listen(): READY only once the socket listens.
  for (int i = 0; i < 10000; ++i) {
    int accepting = 0;
    socklen_t len = sizeof accepting;
    if (getsockopt(listen_fd.load(), SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 && accepting) break;
    usleep(1000);
  }
  ServeControlLoop(actual);
}

RunResult Fail(std::string error) {
  RunResult r;
  r.error = std::move(error);
  return r;
}

RunResult ThriftClient(const CaseSpec& spec, const std::string& address, WindowHooks& hooks) {
  std::string path, host;
  int port = 0;
  if (!ParseAddress(address, &path, &host, &port)) return Fail("thrift: bad address " + address);
  if (spec.outstanding > 1 && spec.size * spec.outstanding > (128u << 10)) {
    return Fail("thrift pipelined baseline needs size*outstanding <= 128 KiB");
  }
  RunResult r;
  try {
    auto socket = path.empty() ? std::make_shared<TSocket>(host, port) : std::make_shared<TSocket>(path);
    if (path.empty()) socket->setNoDelay(true);
    auto transport = std::make_shared<TBufferedTransport>(socket);
    BenchClient client(std::make_shared<TBinaryProtocol>(transport));
    transport->open();
    const std::string payload(spec.size, 'x');
    std::string reply;
    if (spec.outstanding == 1) {
      r = RunSyncLoop(spec, hooks, [&](std::string* err) {
        try {
          client.echo(reply, payload);
        } catch (const TException& e) {
          *err = e.what();
          return false;
        }
        if (reply.size() != spec.size) {
          *err = "thrift: reply of " + std::to_string(reply.size()) + " bytes";
          return false;
        }
        return true;
      });
    } else {
      std::vector<uint64_t> sent(spec.outstanding);
      r = RunPhased(spec, hooks, [&](Phase& phase, std::string* err) {
        try {
          while (phase.MayStart()) {
            int k = 0;
            for (; k < spec.outstanding && phase.MayStart(); ++k) {
              ++phase.started;
              sent[k] = NowNs();
              client.send_echo(payload);
            }
            for (int i = 0; i < k; ++i) {
              client.recv_echo(reply);
              uint64_t now = NowNs();
              if (reply.size() != spec.size) {
                *err = "thrift: reply of " + std::to_string(reply.size()) + " bytes";
                return false;
              }
              phase.Record(now - sent[i]);
            }
          }
        } catch (const TException& e) {
          *err = e.what();
          return false;
        }
        return true;
      });
    }
    transport->close();
  } catch (const TException& e) {
    return Fail("thrift: " + std::string(e.what()));
  }
  r.transport = spec.transport;
  return r;
}

}  // namespace

System ThriftSystem(std::string* note) {
  System s;
  s.name = "thrift";
  s.transports = {"unix", "tcp"};
  s.serve = ThriftServe;
  s.run_client = ThriftClient;
  return s;
}

#else  // !LOCUS_BENCH_HAVE_THRIFT

System ThriftSystem(std::string* note) {
  *note = "Thrift was not found when locus-bench was built: thrift cases skipped "
          "(install libthrift-dev thrift-compiler and reconfigure)";
  System s;
  s.name = "thrift";
  return s;
}

#endif

}  // namespace locus_bench
