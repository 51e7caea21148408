// Cap'n Proto baseline (Debian's libcapnp 0.9): the same echo as an
// interface method (proto/capnp_bench.capnp), EzRpc on both sides.
//   outstanding 1: one request `.send().wait(waitScope)` at a time
//   outstanding N: N independent request chains on one connection (each
//                  sends its next request when its reply arrives)
// Over a Unix socket ("unix:/path") or TCP loopback ("127.0.0.1:port").
// Built only when CMake finds Cap'n Proto (LOCUS_BENCH_HAVE_CAPNP).
#include <cstdio>
#include <cstring>
#include <future>
#include <string>
#include <thread>

#include "harness/systems.h"

#ifdef LOCUS_BENCH_HAVE_CAPNP
#include <capnp/ez-rpc.h>
#include <kj/async.h>
#include <kj/vector.h>

#include "capnp_bench.capnp.h"
#include "harness/phased_loop.h"
#endif

namespace locus_bench {

#ifdef LOCUS_BENCH_HAVE_CAPNP
namespace {

using locus_bench_capnp::Bench;

class BenchImpl final : public Bench::Server {
 protected:
  kj::Promise<void> echo(EchoContext context) override {
    context.getResults().setData(context.getParams().getData());
    return kj::READY_NOW;
  }
};

// Reader limits large enough for 1 MiB payloads with many in flight.
capnp::ReaderOptions Options() {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = uint64_t{1} << 30;
  return o;
}

// Harness address -> EzRpc address ("unix:/path" is one already).
std::string CapnpAddress(const std::string& address) {
  if (address.rfind("tcp://", 0) == 0) return address.substr(6);
  return address;
}

int CapnpServe(const Flags& flags) {
  static std::string address;
  static std::promise<std::string> ready;
  address = flags.at("address");
  // EzRpc runs its event loop on the thread that made it; the main thread
  // answers the harness's control pipe.
  std::thread([] {
    try {
      capnp::EzRpcServer server(kj::heap<BenchImpl>(), CapnpAddress(address), 0, Options());
      auto& ws = server.getWaitScope();
      unsigned port = server.getPort().wait(ws);
      ready.set_value(address.rfind("tcp://", 0) == 0 ? "tcp://127.0.0.1:" + std::to_string(port)
                                                        : address);
      kj::NEVER_DONE.wait(ws);
    } catch (const kj::Exception& e) {
      ready.set_value("ERROR " + std::string(e.getDescription().cStr()));
    }
  }).detach();
  std::string actual = ready.get_future().get();
  if (actual.rfind("ERROR ", 0) == 0) {
    fprintf(stderr, "capnp server: cannot listen on %s: %s\n", address.c_str(), actual.c_str() + 6);
    return 1;
  }
  ServeControlLoop(actual);
}

RunResult Fail(std::string error) {
  RunResult r;
  r.error = std::move(error);
  return r;
}

RunResult CapnpClient(const CaseSpec& spec, const std::string& address, WindowHooks& hooks) {
  RunResult r;
  try {
    capnp::EzRpcClient client(CapnpAddress(address), 0, Options());
    auto& ws = client.getWaitScope();
    Bench::Client bench = client.getMain<Bench>();
    kj::Array<kj::byte> payload = kj::heapArray<kj::byte>(spec.size);
    memset(payload.begin(), 'x', payload.size());
    if (spec.outstanding == 1) {
      r = RunSyncLoop(spec, hooks, [&](std::string* err) {
        try {
          auto req = bench.echoRequest();
          req.setData(payload);
          auto resp = req.send().wait(ws);
          if (resp.getData().size() != spec.size) {
            *err = "capnp: reply of " + std::to_string(resp.getData().size()) + " bytes";
            return false;
          }
          return true;
        } catch (const kj::Exception& e) {
          *err = e.getDescription().cStr();
          return false;
        }
      });
    } else {
      r = RunPhased(spec, hooks, [&](Phase& phase, std::string* err) {
        std::string error;
        // One chain per slot: send, and on the reply record it and send again.
        std::function<kj::Promise<void>()> chain = [&]() -> kj::Promise<void> {
          if (!error.empty() || !phase.MayStart()) return kj::READY_NOW;
          ++phase.started;
          auto req = bench.echoRequest();
          req.setData(payload);
          uint64_t t = NowNs();
          return req.send().then([&, t](capnp::Response<Bench::EchoResults>&& resp) -> kj::Promise<void> {
            uint64_t now = NowNs();
            if (resp.getData().size() != spec.size) {
              error = "capnp: reply of " + std::to_string(resp.getData().size()) + " bytes";
              return kj::READY_NOW;
            }
            phase.Record(now - t);
            return chain();
          });
        };
        kj::Vector<kj::Promise<void>> chains;
        for (int i = 0; i < spec.outstanding; ++i) chains.add(chain());
        try {
          kj::joinPromises(chains.releaseAsArray()).wait(ws);
        } catch (const kj::Exception& e) {
          *err = e.getDescription().cStr();
          return false;
        }
        if (!error.empty()) {
          *err = error;
          return false;
        }
        return true;
      });
    }
  } catch (const kj::Exception& e) {
    return Fail("capnp: " + std::string(e.getDescription().cStr()));
  }
  r.transport = spec.transport;
  return r;
}

}  // namespace

System CapnpSystem(std::string* note) {
  System s;
  s.name = "capnp";
  s.transports = {"unix", "tcp"};
  s.serve = CapnpServe;
  s.run_client = CapnpClient;
  return s;
}

#else  // !LOCUS_BENCH_HAVE_CAPNP

System CapnpSystem(std::string* note) {
  *note = "Cap'n Proto was not found when locus-bench was built: capnp cases skipped "
          "(install libcapnp-dev capnproto and reconfigure)";
  System s;
  s.name = "capnp";
  return s;
}

#endif

}  // namespace locus_bench
