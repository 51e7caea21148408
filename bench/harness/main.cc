// locus-bench: end-to-end latency/throughput of Locus against raw IPC, gRPC
// and (when built with them) Cap'n Proto and Thrift baselines, measured in
// one run. See bench/README.md.
//
//   locus-bench --suite=quick [--pin]
//   locus-bench --transport=unix --size=64,4096 --outstanding=1,8 --seconds=2
//   locus-bench --transport=auto --address=unix:/tmp/x.sock --calls=100000
//
// Output: one JSON object per line per case on stdout, then one line with
// "case":"summary" per Locus case (ratios to the raw and peer baselines run
// alongside it); a human-readable summary table and progress go to stderr.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "harness/common.h"
#include "harness/systems.h"

namespace locus_bench {
namespace {

constexpr const char* kUsage = R"(usage: locus-bench [flags]
  --suite=smoke|quick|full   predefined case sets (smoke: tiny correctness run;
                             quick: < 1 min; full: all sizes, 3 rounds)
  --transport=T              unix | tcp | shm | inproc | auto | grpc | capnp |
                             thrift | udp (udp: unary calls; gRPC compared over tcp).
                             shm: server on unix:<path>, client on shm:<path>;
                             inproc: server in this process, in-process calls;
                             grpc/capnp/thrift: that baseline alone (--over)
  --address=ADDR             server address (required for --transport=auto;
                             e.g. unix:/tmp/b.sock, tcp://127.0.0.1:7000);
                             auto reports the transport the channel ended on
  --over=unix|tcp            socket of --transport=grpc|capnp|thrift (default
                             unix; --grpc-over= is the same flag)
  --size=N[,N...]            payload bytes each way (default 64)
  --outstanding=N[,N...]     calls in flight: 1 = sync ping-pong, N>1 = callback
                             API with N in flight (default 1)
  --mode=unary|streaming     streaming: one bidirectional stream per case, each
                             call a message echoed on it (outstanding N = N
                             messages in flight); Locus and gRPC (sync API)
                             against the same raw ping-pong; no capnp/thrift
  --calls=N | --seconds=S    measured run length per case (default 2 s)
  --warmup-calls=N | --warmup-seconds=S
  --rounds=N                 repeat the interleaved case list N times
  --baselines=all|none|LIST  baselines run next to a --transport case; LIST:
                             comma-separated raw,grpc,capnp,thrift
  --only=raw|locus|grpc|capnp|thrift   run only that system's cases of the plan
  --rmi                      with --transport=unix|tcp|shm: also run the
                             remote-object cases next to the Locus case (the
                             same Echo on a received reference, "ref", and a
                             call whose handler calls the client's object back,
                             "callback_ref"); the suites include them on unix
                             and shm
  --pin                      pin client and server to two different CPUs
  --case-timeout=S           watchdog per case (default: run length + 30 s)
  --shm-ring-bytes=N         Locus shm: ChannelOptions::shm_ring_bytes (power of 2)
  --shm-bulk-bytes=N         Locus shm: ChannelOptions::shm_bulk_bytes (0: no bulk areas)
  --shm-spin-us=N            Locus shm: client and server shm_spin (0 = never poll)
  --socket-spin-us=N         Locus unix/tcp/udp: client and server socket_spin (0 = never poll)
  --no-deadlock-detection    call absl::SetMutexDeadlockDetectionMode(kIgnore) in
                             client and server (diagnostic: Debian's libabsl is
                             built without NDEBUG, so every absl::Mutex::Lock
                             does deadlock-graph bookkeeping by default)
  --out=FILE                 also append the JSON lines to FILE
)";

std::string g_out_path;
FILE* g_out_file = nullptr;

void EmitJson(const std::string& line) {
  printf("%s\n", line.c_str());
  fflush(stdout);
  if (g_out_file != nullptr) {
    fprintf(g_out_file, "%s\n", line.c_str());
    fflush(g_out_file);
  }
}

[[noreturn]] void Die(const std::string& msg, int code = 2) {
  fprintf(stderr, "locus-bench: %s\n", msg.c_str());
  exit(code);
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// ---- Watchdog -------------------------------------------------------------

struct Watchdog {
  std::mutex mu;
  uint64_t deadline_ns = 0;  // 0: disarmed
  pid_t pid = -1;
  uint64_t fired_ns = 0;

  void Arm(double seconds, pid_t server) {
    std::lock_guard<std::mutex> lock(mu);
    g_abort.store(false);
    deadline_ns = NowNs() + static_cast<uint64_t>(seconds * 1e9);
    pid = server;
    fired_ns = 0;
  }
  void Disarm() {
    std::lock_guard<std::mutex> lock(mu);
    deadline_ns = 0;
    pid = -1;
  }
  void Loop() {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      std::lock_guard<std::mutex> lock(mu);
      uint64_t now = NowNs();
      if (deadline_ns == 0 || now < deadline_ns) continue;
      if (fired_ns == 0) {
        fprintf(stderr, "locus-bench: watchdog: case overran its timeout; killing server %d\n", pid);
        g_abort.store(true);
        if (pid > 0) kill(pid, SIGKILL);
        fired_ns = now;
      } else if (now - fired_ns > 10000000000ull) {
        fprintf(stderr, "locus-bench: watchdog: client still stuck 10 s after killing the server; exiting\n");
        if (pid > 0) kill(pid, SIGKILL);
        _exit(3);
      }
    }
  }
};
Watchdog g_watchdog;

// ---- Cases --------------------------------------------------------------

struct Stats {
  bool ok = false;
  std::string error;
  std::string transport;
  uint64_t calls = 0;
  double elapsed_s = 0, p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
  double calls_per_s = 0, mb_per_s = 0, cpu = 0, client_cpu = 0, server_cpu = 0;
};

struct Outcome {
  CaseSpec spec;
  Stats stats;
};

struct Context {
  std::map<std::string, System> systems;
  bool pin = false;
  int server_cpu = -1;
  double case_timeout = 0;
  int seq = 0;
  bool no_deadlock_detection = false;
};

std::string DefaultAddress(const std::string& system, const std::string& transport, int seq) {
  // Locus shm: the server listens on a Unix socket; the client dials
  // shm:<same path> (locus_cases.cc). Raw shm passes a memfd instead.
  if (transport == "unix" || (transport == "shm" && system == "locus")) {
    const std::string path =
        "/tmp/locus-bench-" + std::to_string(getpid()) + "-" + std::to_string(seq) + ".sock";
    // Names carry this process's pid, so a file already there is stale: left
    // by an earlier run with the same pid that was itself killed before it
    // could remove its server's socket file (ServerProcess::Kill).
    unlink(path.c_str());
    return "unix:" + path;
  }
  if (transport == "tcp") return "tcp://127.0.0.1:0";
  if (transport == "udp") return "udp://127.0.0.1:0";
  if (transport == "shm") return "shm:";
  return "";
}

// The gRPC baseline a Locus transport is compared with: gRPC has no
// shared-memory or in-process transport, so those compare with gRPC over a
// Unix socket (the fastest gRPC option on one host).
std::string GrpcTransportFor(const std::string& locus_transport) {
  if (locus_transport == "shm" || locus_transport == "inproc") return "unix";
  if (locus_transport == "udp") return "tcp";  // gRPC has no datagram transport
  return locus_transport;
}

// The raw variant a Locus transport's summary compares with (shm: adaptive,
// which like Locus sleeps when idle; spin is reported alongside).
std::string RawVariantFor(const std::string& locus_transport) {
  return locus_transport == "shm" ? "adaptive" : "";
}

// On stream sockets the raw ping-pong runs in three variants (raw_cases.cc)
// at one outstanding call: blocking reads (the floor the targets name), an
// epoll server (the part of the distance that any event-loop server pays),
// and both sides busy-polling (the floor of a reader that polls, as Locus's
// do for socket_spin). UDP: blocking and polling.
bool HasSocketVariants(const std::string& transport, int outstanding) {
  return (transport == "unix" || transport == "tcp" || transport == "udp") && outstanding == 1;
}

class ServerHooks final : public WindowHooks {
 public:
  explicit ServerHooks(ServerProcess* server) : server_(server) {}
  void Begin() override { cpu0_ = server_->CpuUs(); }
  void End() override { cpu1_ = server_->CpuUs(); }
  double cpu_us() const { return cpu0_ < 0 || cpu1_ < 0 ? NAN : cpu1_ - cpu0_; }

 private:
  ServerProcess* server_;
  double cpu0_ = -1, cpu1_ = -1;
};

class NoServerHooks final : public WindowHooks {
 public:
  void Begin() override {}
  void End() override {}
};

// Fills the numbers of `st` from a finished run.
void Summarize(const CaseSpec& spec, RunResult& r, double server_cpu_us, Stats* st) {
  st->error = r.error;
  st->transport = r.transport;
  std::vector<uint32_t>& lat = r.lat_ns;
  std::sort(lat.begin(), lat.end());
  st->calls = lat.size() * r.calls_per_sample;
  st->elapsed_s = r.elapsed_s;
  if (!lat.empty()) {
    double sum = 0;
    for (uint32_t v : lat) sum += v;
    st->mean = sum / lat.size() / 1000.0;
    st->p50 = PercentileUs(lat, 0.50);
    st->p90 = PercentileUs(lat, 0.90);
    st->p99 = PercentileUs(lat, 0.99);
    st->p999 = PercentileUs(lat, 0.999);
    st->max = lat.back() / 1000.0;
  }
  if (r.elapsed_s > 0) {
    st->calls_per_s = st->calls / r.elapsed_s;
    st->mb_per_s = st->calls * 2.0 * spec.size / r.elapsed_s / 1e6;
  }
  st->client_cpu = st->calls ? r.client_cpu_us / st->calls : NAN;
  st->server_cpu = st->calls ? server_cpu_us / st->calls : NAN;
  st->cpu = st->client_cpu + st->server_cpu;
  if (st->error.empty() && st->calls == 0) st->error = "no calls completed";
  if (st->error.empty() && spec.system == "locus" && spec.transport != "auto" &&
      st->transport != spec.transport) {
    st->error = "channel ended on transport '" + st->transport + "', asked for '" + spec.transport + "'";
  }
  st->ok = st->error.empty();
}

// A case whose server lives in this process (inproc): no child, no CPU
// query; the client's CPU time covers both sides (server_cpu = 0).
Stats RunInProcessCase(Context& ctx, const CaseSpec& spec, System& sys) {
  Stats st;
  double timeout = ctx.case_timeout > 0 ? ctx.case_timeout
                                        : (spec.calls > 0 ? 60.0 : spec.seconds * 3 + 30.0);
  g_watchdog.Arm(timeout, -1);  // nothing to kill: g_abort stops the loop
  NoServerHooks hooks;
  RunResult r = sys.run_in_process(spec, hooks);
  g_watchdog.Disarm();
  if (g_abort.load()) {
    r.error = "watchdog: case exceeded its " + std::to_string(static_cast<int>(timeout)) +
              " s timeout: " + r.error;
  }
  Summarize(spec, r, 0.0, &st);
  return st;
}

Stats RunCase(Context& ctx, const CaseSpec& spec) {
  Stats st;
  System& sys = ctx.systems.at(spec.system);
  if (spec.transport == "inproc") {
    if (sys.run_in_process == nullptr) {
      st.error = spec.system + " has no in-process case";
      return st;
    }
    return RunInProcessCase(ctx, spec, sys);
  }
  int seq = ctx.seq++;
  std::string address =
      spec.address.empty() ? DefaultAddress(spec.system, spec.transport, seq) : spec.address;
  std::vector<std::string> args = {"--role=server", "--system=" + spec.system,
                                   "--transport=" + spec.transport, "--variant=" + spec.variant,
                                   "--size=" + std::to_string(spec.size), "--address=" + address};
  if (ctx.pin) args.push_back("--cpu=" + std::to_string(ctx.server_cpu));
  if (spec.shm_spin_us >= 0) args.push_back("--shm-spin-us=" + std::to_string(spec.shm_spin_us));
  if (spec.socket_spin_us >= 0) {
    args.push_back("--socket-spin-us=" + std::to_string(spec.socket_spin_us));
  }
  if (ctx.no_deadlock_detection) args.push_back("--no-deadlock-detection");
  int keep_fd = -1;
  std::string err;
  if (sys.prepare != nullptr && !sys.prepare(spec, &keep_fd, &args, &err)) {
    st.error = err;
    return st;
  }
  ServerProcess server;
  std::string ready_address;
  if (!server.Spawn("locus-bench-server", args, keep_fd, &err) ||
      !server.WaitReady(20.0, &ready_address, &err)) {
    st.error = err;
  } else {
    double timeout = ctx.case_timeout > 0 ? ctx.case_timeout
                                          : (spec.calls > 0 ? 60.0 : spec.seconds * 3 + 30.0);
    g_watchdog.Arm(timeout, server.pid());
    ServerHooks hooks(&server);
    RunResult r = sys.run_client(spec, ready_address, hooks);
    g_watchdog.Disarm();
    if (g_abort.load()) {
      r.error = "watchdog: case exceeded its " + std::to_string(static_cast<int>(timeout)) +
                " s timeout (server killed): " + r.error;
    }
    Summarize(spec, r, hooks.cpu_us(), &st);
  }
  server.Kill();
  if (sys.cleanup != nullptr) sys.cleanup();
  if (ready_address.rfind("unix:/", 0) == 0) unlink(ready_address.c_str() + 5);
  if (ready_address.rfind("shm:/", 0) == 0) unlink(ready_address.c_str() + 4);
  return st;
}

void PrintOutcome(const Context& ctx, const Outcome& o) {
  const CaseSpec& s = o.spec;
  const Stats& st = o.stats;
  JsonLine j;
  j.Str("case", s.Name())
      .Str("system", s.system)
      .Str("transport", st.transport.empty() ? s.transport : st.transport)
      .Str("requested_transport", s.transport)
      .Str("variant", s.variant)
      .Int("size", s.size)
      .Int("outstanding", s.outstanding)
      .Str("mode", s.streaming ? "streaming" : "unary")
      .Int("round", s.round)
      .Bool("pinned", ctx.pin);
  if (s.batch > 1) j.Int("timed_batch", s.batch);  // latencies are per-call means of batches
  if (s.shm_ring_bytes > 0) j.Int("shm_ring_bytes", s.shm_ring_bytes);
  if (s.shm_bulk_bytes >= 0) j.Int("shm_bulk_bytes", s.shm_bulk_bytes);
  if (s.shm_spin_us >= 0) j.Num("shm_spin_us", s.shm_spin_us);
  if (s.socket_spin_us >= 0 && s.system == "locus") j.Num("socket_spin_us", s.socket_spin_us);
  if (ctx.no_deadlock_detection) j.Bool("absl_deadlock_detection", false);
  if (!st.ok) {
    j.Str("error", st.error);
    EmitJson(j.Done());
    fprintf(stderr, "  %-24s size=%-8zu out=%-3d FAILED: %s\n", s.Name().c_str(), s.size,
            s.outstanding, st.error.c_str());
    return;
  }
  j.Int("calls", st.calls)
      .Num("elapsed_s", st.elapsed_s)
      .Num("p50_us", st.p50)
      .Num("p90_us", st.p90)
      .Num("p99_us", st.p99)
      .Num("p999_us", st.p999)
      .Num("max_us", st.max)
      .Num("mean_us", st.mean)
      .Num("calls_per_s", st.calls_per_s)
      .Num("mb_per_s", st.mb_per_s)
      .Num("cpu_us_per_call", st.cpu)
      .Num("client_cpu_us_per_call", st.client_cpu)
      .Num("server_cpu_us_per_call", st.server_cpu);
  EmitJson(j.Done());
  std::string name = s.Name();
  if (s.transport == "auto") name += "->" + st.transport;
  fprintf(stderr, "  %-24s size=%-8zu out=%-3d p50=%9.3fus p99=%9.2fus %10.0f calls/s %9.1f MB/s cpu=%.2fus/call\n",
          name.c_str(), s.size, s.outstanding, st.p50, st.p99, st.calls_per_s, st.mb_per_s, st.cpu);
}

// ---- Summary ------------------------------------------------------------

struct Agg {
  double p50 = NAN, p99 = NAN, cps = NAN, cpu = NAN, mbps = NAN;
  bool found = false;
  std::string name;  // case name of the first match
};

double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Median over rounds of the successful outcomes matching `pred`.
template <typename Pred>
Agg Aggregate(const std::vector<Outcome>& all, Pred pred) {
  std::vector<double> p50, p99, cps, cpu, mbps;
  Agg a;
  for (const Outcome& o : all) {
    if (!o.stats.ok || !pred(o)) continue;
    if (a.name.empty()) a.name = o.spec.Name();
    p50.push_back(o.stats.p50);
    p99.push_back(o.stats.p99);
    cps.push_back(o.stats.calls_per_s);
    cpu.push_back(o.stats.cpu);
    mbps.push_back(o.stats.mb_per_s);
  }
  a.found = !p50.empty();
  a.p50 = Median(p50);
  a.p99 = Median(p99);
  a.cps = Median(cps);
  a.cpu = Median(cpu);
  a.mbps = Median(mbps);
  return a;
}

void PrintSummary(const std::vector<Outcome>& all) {
  // One summary per distinct Locus (transport actually used, size, outstanding).
  std::vector<std::tuple<std::string, size_t, int>> keys;
  for (const Outcome& o : all) {
    if (o.spec.system != "locus" || !o.spec.variant.empty() || !o.stats.ok) continue;
    auto key = std::make_tuple(o.stats.transport, o.spec.size, o.spec.outstanding);
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
  }
  if (keys.empty()) return;
  fprintf(stderr,
          "\nSummary (median over rounds; vs_raw = locus_p50/raw_p50 (shm: raw adaptive), vs_grpc =\n"
          "         grpc_p50/locus_p50 (shm, inproc: gRPC over unix); x raw / x grpc = locus calls/s over\n"
          "         baseline calls/s; MB/s = payload both ways; inproc latencies are batch means;\n"
          "         capnp/thrift p50 and x capnp / x thrift (locus calls/s over theirs): same socket type,\n"
          "         '-' when that baseline did not run; vs_ep = locus_p50 over the raw ping-pong whose\n"
          "         server waits in epoll, as event-loop servers do (unix, tcp), and for shm over the\n"
          "         raw ping-pong on sealed rings, where the polled line carries the message);\n"
          "         vs_poll = locus_p50 over the raw ping-pong whose both sides busy-poll their\n"
          "         sockets (unix, tcp, udp), as Locus's readers do for socket_spin (50 us by\n"
          "         default; the raw blocking and epoll ping-pongs, gRPC, Cap'n Proto and Thrift\n"
          "         never poll)\n");
  fprintf(stderr, "%-6s %8s %4s | %9s %9s %9s %9s | %9s %9s | %7s %7s | %10s %8s %8s | %6s %6s | %9s %9s %8s %8s | %6s %7s\n",
          "trans", "size", "out", "locus p50", "locus p99", "calls/s", "MB/s", "raw p50", "grpc p50",
          "vs_raw", "vs_grpc", "cps raw", "x raw", "x grpc", "cpu L", "cpu G", "capnp p50", "thrft p50",
          "x capnp", "x thrift", "vs_ep", "vs_poll");
  // Rows of the remote-object table printed after the summary.
  struct RmiRow {
    std::string transport;
    size_t size;
    int out;
    double plain_p50;
    bool ref_found;
    double ref_p50, ref_p99;
    bool callback_found;
    double callback_p50, callback_p99;
  };
  std::vector<RmiRow> rmi_rows;
  for (const auto& [transport, size, out] : keys) {
    const std::string t = transport;
    const size_t sz = size;
    const int n = out;
    auto like = [&](const Outcome& o, const char* system) {
      return o.spec.system == system && o.spec.size == sz && o.spec.outstanding == n;
    };
    Agg locus = Aggregate(all, [&](const Outcome& o) {
      return like(o, "locus") && o.spec.variant.empty() && o.stats.transport == t;
    });
    // The remote-object variants of the same transport, size and N.
    Agg ref = Aggregate(all, [&](const Outcome& o) {
      return like(o, "locus") && o.spec.variant == "ref" && o.stats.transport == t;
    });
    Agg callback_ref = Aggregate(all, [&](const Outcome& o) {
      return like(o, "locus") && o.spec.variant == "callback_ref" && o.stats.transport == t;
    });
    Agg raw = Aggregate(all, [&](const Outcome& o) {
      return like(o, "raw") && o.stats.transport == t && o.spec.variant == RawVariantFor(t);
    });
    Agg raw_spin = Aggregate(all, [&](const Outcome& o) {
      return like(o, "raw") && o.stats.transport == t && o.spec.variant == "spin";
    });
    Agg raw_sealed = Aggregate(all, [&](const Outcome& o) {
      return like(o, "raw") && o.stats.transport == t && o.spec.variant == "sealed";
    });
    Agg raw_epoll = Aggregate(all, [&](const Outcome& o) {
      return like(o, "raw") && o.stats.transport == t && o.spec.variant == "epoll";
    });
    Agg raw_poll = Aggregate(all, [&](const Outcome& o) {
      return like(o, "raw") && o.stats.transport == t && o.spec.variant == "poll";
    });
    bool streaming = false;
    for (const Outcome& o : all) streaming |= o.spec.streaming;
    std::string grpc_variant = n == 1 || streaming ? "sync" : "callback";
    std::string grpc_transport = GrpcTransportFor(t);
    Agg grpc = Aggregate(all, [&](const Outcome& o) {
      return like(o, "grpc") && o.spec.transport == grpc_transport && o.spec.variant == grpc_variant;
    });
    // Cap'n Proto / Thrift on the same socket type (shm, inproc: over unix).
    Agg capnp = Aggregate(all, [&](const Outcome& o) {
      return like(o, "capnp") && o.spec.transport == grpc_transport;
    });
    Agg thrift = Aggregate(all, [&](const Outcome& o) {
      return like(o, "thrift") && o.spec.transport == grpc_transport;
    });
    bool auto_run = false;
    for (const Outcome& o : all) auto_run |= o.spec.system == "locus" && o.spec.transport == "auto";
    if (auto_run) {
      // --transport=auto: the baselines ran on the address's scheme, which
      // may differ from where the channel ended; compare with what ran.
      if (!raw.found) raw = Aggregate(all, [&](const Outcome& o) { return like(o, "raw"); });
      if (!grpc.found) {
        grpc = Aggregate(all, [&](const Outcome& o) { return like(o, "grpc") && o.spec.variant == grpc_variant; });
      }
      if (!capnp.found) capnp = Aggregate(all, [&](const Outcome& o) { return like(o, "capnp"); });
      if (!thrift.found) thrift = Aggregate(all, [&](const Outcome& o) { return like(o, "thrift"); });
    }
    JsonLine j;
    j.Str("case", "summary")
        .Str("transport", transport)
        .Int("size", size)
        .Int("outstanding", out)
        .Str("mode", streaming ? "streaming" : "unary")
        .Num("locus_p50_us", locus.p50)
        .Num("locus_p99_us", locus.p99)
        .Num("locus_calls_per_s", locus.cps)
        .Num("locus_mb_per_s", locus.mbps)
        .Num("locus_cpu_us_per_call", locus.cpu);
    if (raw.found) {
      j.Str("raw_case", raw.name)
          .Num("raw_p50_us", raw.p50)
          .Num("raw_p99_us", raw.p99)
          .Num("raw_calls_per_s", raw.cps)
          .Num("vs_raw", locus.p50 / raw.p50)
          .Num("vs_raw_p99", locus.p99 / raw.p99)
          .Num("vs_raw_tput", locus.cps / raw.cps);
    }
    if (raw_spin.found) {
      j.Num("raw_spin_p50_us", raw_spin.p50).Num("vs_raw_spin", locus.p50 / raw_spin.p50);
    }
    if (raw_sealed.found) {
      j.Num("raw_sealed_p50_us", raw_sealed.p50).Num("vs_raw_sealed", locus.p50 / raw_sealed.p50);
    }
    if (raw_epoll.found) {
      j.Num("raw_epoll_p50_us", raw_epoll.p50).Num("vs_raw_epoll", locus.p50 / raw_epoll.p50);
    }
    if (raw_poll.found) {
      j.Num("raw_poll_p50_us", raw_poll.p50).Num("vs_raw_poll", locus.p50 / raw_poll.p50);
    }
    if (grpc.found) {
      j.Str("grpc_case", grpc.name)
          .Num("grpc_p50_us", grpc.p50)
          .Num("grpc_p99_us", grpc.p99)
          .Num("grpc_calls_per_s", grpc.cps)
          .Num("grpc_cpu_us_per_call", grpc.cpu)
          .Num("vs_grpc", grpc.p50 / locus.p50)
          .Num("vs_grpc_p99", grpc.p99 / locus.p99)
          .Num("vs_grpc_tput", locus.cps / grpc.cps)
          .Num("vs_grpc_cpu", grpc.cpu / locus.cpu);
    }
    for (const auto& [peer, agg] : {std::pair<std::string, const Agg*>{"capnp", &capnp},
                                    std::pair<std::string, const Agg*>{"thrift", &thrift}}) {
      if (!agg->found) continue;
      j.Str(peer + "_case", agg->name)
          .Num(peer + "_p50_us", agg->p50)
          .Num(peer + "_p99_us", agg->p99)
          .Num(peer + "_calls_per_s", agg->cps)
          .Num(peer + "_cpu_us_per_call", agg->cpu)
          .Num("vs_" + peer, agg->p50 / locus.p50)
          .Num("vs_" + peer + "_p99", agg->p99 / locus.p99)
          .Num("vs_" + peer + "_tput", locus.cps / agg->cps)
          .Num("vs_" + peer + "_cpu", agg->cpu / locus.cpu);
    }
    for (const auto& [variant, agg] : {std::pair<std::string, const Agg*>{"ref", &ref},
                                       std::pair<std::string, const Agg*>{"callback_ref", &callback_ref}}) {
      if (!agg->found) continue;
      j.Str(variant + "_case", agg->name)
          .Num(variant + "_p50_us", agg->p50)
          .Num(variant + "_p99_us", agg->p99)
          .Num(variant + "_calls_per_s", agg->cps)
          .Num(variant + "_cpu_us_per_call", agg->cpu)
          .Num(variant + "_vs_plain", agg->p50 / locus.p50);
    }
    if (ref.found || callback_ref.found) {
      rmi_rows.push_back({transport, size, out, locus.p50, ref.found, ref.p50, ref.p99, callback_ref.found,
                          callback_ref.p50, callback_ref.p99});
    }
    EmitJson(j.Done());
    auto cell = [](bool found, double v, const char* fmt) {
      char buf[32];
      if (!found) return std::string("-");
      snprintf(buf, sizeof buf, fmt, v);
      return std::string(buf);
    };
    fprintf(stderr, "%-6s %8zu %4d | %9.3f %9.2f %9.0f %9.1f | %9.3f %9.2f | %7.2f %7.1f | %10.0f %8.2f %8.2f | %6.2f %6.2f | %9s %9s %8s %8s | %6s %7s\n",
            transport.c_str(), size, out, locus.p50, locus.p99, locus.cps, locus.mbps, raw.p50, grpc.p50,
            locus.p50 / raw.p50, grpc.p50 / locus.p50, raw.cps, locus.cps / raw.cps,
            locus.cps / grpc.cps, locus.cpu, grpc.cpu, cell(capnp.found, capnp.p50, "%.2f").c_str(),
            cell(thrift.found, thrift.p50, "%.2f").c_str(),
            cell(capnp.found, locus.cps / capnp.cps, "%.2f").c_str(),
            cell(thrift.found, locus.cps / thrift.cps, "%.2f").c_str(),
            raw_epoll.found ? cell(true, locus.p50 / raw_epoll.p50, "%.2f").c_str()
                            : cell(raw_sealed.found, locus.p50 / raw_sealed.p50, "%.2f").c_str(),
            cell(raw_poll.found, locus.p50 / raw_poll.p50, "%.2f").c_str());
  }
  if (rmi_rows.empty()) return;
  fprintf(stderr,
          "\nRemote objects (median over rounds; plain = Echo on the server's root service, the\n"
          "         locus case above; ref = the same Echo on an object a call returned (a\n"
          "         locus::Remote); callback = a call whose handler calls the client's object\n"
          "         back once (two round trips); x plain = p50 over plain p50)\n");
  fprintf(stderr, "%-6s %8s %4s | %9s | %9s %9s %7s | %9s %9s %7s\n", "trans", "size", "out",
          "plain p50", "ref p50", "ref p99", "x plain", "cb p50", "cb p99", "x plain");
  for (const RmiRow& row : rmi_rows) {
    auto num = [](bool found, double v, const char* fmt) {
      char buf[32];
      if (!found) return std::string("-");
      snprintf(buf, sizeof buf, fmt, v);
      return std::string(buf);
    };
    fprintf(stderr, "%-6s %8zu %4d | %9.3f | %9s %9s %7s | %9s %9s %7s\n", row.transport.c_str(),
            row.size, row.out, row.plain_p50, num(row.ref_found, row.ref_p50, "%.3f").c_str(),
            num(row.ref_found, row.ref_p99, "%.2f").c_str(),
            num(row.ref_found, row.ref_p50 / row.plain_p50, "%.3f").c_str(),
            num(row.callback_found, row.callback_p50, "%.3f").c_str(),
            num(row.callback_found, row.callback_p99, "%.2f").c_str(),
            num(row.callback_found, row.callback_p50 / row.plain_p50, "%.3f").c_str());
  }
}

// ---- Plans --------------------------------------------------------------

struct PlanOptions {
  std::vector<size_t> sizes = {64};
  std::vector<int> outstanding = {1};
  // Per-transport overrides of sizes / outstanding (suites only).
  std::map<std::string, std::vector<size_t>> transport_sizes;
  std::map<std::string, std::vector<int>> transport_outstanding;
  uint64_t calls = 0;
  double seconds = 2.0;
  uint64_t warmup_calls = 0;
  double warmup_seconds = 0.2;
  int rounds = 1;
  uint64_t shm_ring_bytes = 0;
  int64_t shm_bulk_bytes = -1;
  double shm_spin_us = -1;
  double socket_spin_us = -1;
  // Remote-object variants (locus_cases.cc: "ref", "callback_ref") run right
  // after the Locus case of these transports, sizes and N.
  std::vector<std::string> rmi_transports;
  std::vector<size_t> rmi_sizes;
  std::vector<int> rmi_outstanding;
};

const char* const kRmiVariants[] = {"ref", "callback_ref"};

// Transports the remote-object variants run on (a server in another
// process, a reference that comes back over the connection).
bool RmiTransport(const std::string& transport) {
  return transport == "unix" || transport == "tcp" || transport == "shm";
}

// Whether `p` asks for the remote-object variants next to this Locus case.
bool WantsRmi(const PlanOptions& p, const std::string& transport, size_t size, int out) {
  auto has = [](const auto& list, const auto& v) {
    return std::find(list.begin(), list.end(), v) != list.end();
  };
  return RmiTransport(transport) && has(p.rmi_transports, transport) && has(p.rmi_sizes, size) &&
         has(p.rmi_outstanding, out);
}

// Why `spec` cannot run (skipped, not failed), or "".
std::string SkipReason(const CaseSpec& s) {
  if (s.transport == "inproc" && s.outstanding != 1 && !s.streaming) {
    return "in-process calls complete inline on the caller: outstanding > 1 adds nothing to measure";
  }
  if (s.system == "thrift" && s.outstanding > 1 && s.size * s.outstanding > (128u << 10)) {
    return "thrift pipelined baseline (blocking sockets both sides) limited to size*outstanding <= 128 KiB";
  }
  if (s.system == "raw") {
    if ((s.transport == "udp" || s.transport == "shm") && s.outstanding != 1) {
      return "raw " + s.transport + " baseline is ping-pong only";
    }
    if (s.transport == "udp" && s.size > 65507) return "UDP datagrams are at most 65507 bytes";
    if (s.outstanding > 1 && s.size * s.outstanding > (128u << 10)) {
      return "raw pipelined baseline limited to size*outstanding <= 128 KiB";
    }
  }
  return "";
}

CaseSpec Make(const PlanOptions& p, const std::string& system, const std::string& transport,
              const std::string& variant, size_t size, int out, int round) {
  CaseSpec s;
  s.system = system;
  s.transport = transport;
  s.variant = variant;
  s.size = size;
  s.outstanding = out;
  s.calls = p.calls;
  s.seconds = p.seconds;
  s.warmup_calls = p.warmup_calls;
  s.warmup_seconds = p.warmup_seconds;
  s.round = round;
  s.shm_ring_bytes = p.shm_ring_bytes;
  s.shm_bulk_bytes = p.shm_bulk_bytes;
  s.shm_spin_us = p.shm_spin_us;
  s.socket_spin_us = p.socket_spin_us;
  // An in-process call takes about as long as two clock reads: time batches.
  if (transport == "inproc" && out == 1) s.batch = 64;
  return s;
}

// The raw shm baselines of one case (raw_cases.cc): index-polling rings
// spinning, sealed rings spinning, index-polling rings adaptive.
void AddRawShmCases(const PlanOptions& p, size_t size, int out, int round, std::vector<CaseSpec>* plan) {
  for (const char* variant : {"spin", "sealed", "adaptive"}) {
    plan->push_back(Make(p, "raw", "shm", variant, size, out, round));
  }
}

// The Locus case and, where `p` asks for them, its remote-object variants
// right after it.
void AddLocusCases(const PlanOptions& p, const std::string& transport, const std::string& address,
                   size_t size, int out, int round, std::vector<CaseSpec>* plan) {
  plan->push_back(Make(p, "locus", transport, "", size, out, round));
  plan->back().address = address;
  if (!WantsRmi(p, transport, size, out)) return;
  for (const char* variant : kRmiVariants) {
    plan->push_back(Make(p, "locus", transport, variant, size, out, round));
    plan->back().address = address;
  }
}

// The raw baselines of a socket transport (see HasSocketVariants).
void AddRawSocketCases(const PlanOptions& p, const std::string& transport, size_t size, int out,
                       int round, std::vector<CaseSpec>* plan) {
  plan->push_back(Make(p, "raw", transport, "", size, out, round));
  if (!HasSocketVariants(transport, out)) return;
  if (transport != "udp") plan->push_back(Make(p, "raw", transport, "epoll", size, out, round));
  plan->push_back(Make(p, "raw", transport, "poll", size, out, round));
}

// Interleaved plan: per round, per size, per outstanding, each transport's
// raw baseline(s), Locus case and gRPC case back to back. shm runs raw spin,
// sealed and adaptive, Locus, and gRPC over unix (gRPC has no shm); inproc runs
// the virtual-call baseline and Locus.
// Cap'n Proto and Thrift (`peers`) run next to the unix and tcp cases.
std::vector<CaseSpec> SuitePlan(const PlanOptions& p, const std::vector<std::string>& transports,
                                bool with_grpc, const std::vector<std::string>& peers = {}) {
  auto sizes_of = [&](const std::string& t) {
    auto it = p.transport_sizes.find(t);
    return it == p.transport_sizes.end() ? p.sizes : it->second;
  };
  auto outs_of = [&](const std::string& t) {
    auto it = p.transport_outstanding.find(t);
    return it == p.transport_outstanding.end() ? p.outstanding : it->second;
  };
  std::vector<size_t> all_sizes;
  std::vector<int> all_outs;
  for (const std::string& t : transports) {
    for (size_t v : sizes_of(t)) {
      if (std::find(all_sizes.begin(), all_sizes.end(), v) == all_sizes.end()) all_sizes.push_back(v);
    }
    for (int v : outs_of(t)) {
      if (std::find(all_outs.begin(), all_outs.end(), v) == all_outs.end()) all_outs.push_back(v);
    }
  }
  std::sort(all_sizes.begin(), all_sizes.end());
  std::sort(all_outs.begin(), all_outs.end());
  std::vector<CaseSpec> plan;
  for (int round = 0; round < p.rounds; ++round) {
    for (size_t size : all_sizes) {
      for (int out : all_outs) {
        for (const std::string& t : transports) {
          std::vector<size_t> ts = sizes_of(t);
          std::vector<int> to = outs_of(t);
          if (std::find(ts.begin(), ts.end(), size) == ts.end() ||
              std::find(to.begin(), to.end(), out) == to.end()) {
            continue;
          }
          if (t == "shm") {
            AddRawShmCases(p, size, out, round, &plan);
          } else {
            AddRawSocketCases(p, t, size, out, round, &plan);
          }
          AddLocusCases(p, t, "", size, out, round, &plan);
          // udp compares with gRPC over tcp, which the tcp rows ran already.
          if (with_grpc && t != "inproc" && t != "udp") {
            plan.push_back(Make(p, "grpc", GrpcTransportFor(t), out == 1 ? "sync" : "callback", size, out, round));
          }
          if (t == "unix" || t == "tcp") {
            for (const std::string& peer : peers) plan.push_back(Make(p, peer, t, "", size, out, round));
          }
        }
      }
    }
  }
  return plan;
}

std::string SchemeTransport(const std::string& address) {
  if (address.rfind("unix:", 0) == 0 || address.rfind("unix-abstract:", 0) == 0) return "unix";
  if (address.rfind("tcp://", 0) == 0) return "tcp";
  if (address.rfind("shm:", 0) == 0 || address.rfind("shm-abstract:", 0) == 0) return "shm";
  return "";
}

const std::vector<std::string> kSuiteTransports = {"unix", "tcp", "udp", "shm", "inproc"};

int ClientMain(Flags& flags) {
  static const char* kKnown[] = {"suite", "transport", "address", "grpc-over", "over", "size", "outstanding",
                                 "mode", "calls", "seconds", "warmup-calls", "warmup-seconds",
                                 "rounds", "baselines", "only", "pin", "case-timeout", "out", "help",
                                 "shm-ring-bytes", "shm-bulk-bytes", "shm-spin-us", "socket-spin-us",
                                 "no-deadlock-detection", "rmi"};
  for (const auto& [k, v] : flags) {
    if (std::find(std::begin(kKnown), std::end(kKnown), k) == std::end(kKnown)) {
      Die("unknown flag --" + k + "\n" + kUsage);
    }
  }
  if (flags.count("help")) {
    fputs(kUsage, stdout);
    return 0;
  }
  const std::string mode = flags.count("mode") ? flags["mode"] : "unary";
  if (mode != "unary" && mode != "streaming") Die("--mode must be unary or streaming");
  const bool streaming = mode == "streaming";
  if (streaming && flags.count("transport") && flags["transport"] == "udp") {
    Die("--mode=streaming --transport=udp: Locus over UDP has no streams (datagrams may be lost; "
        "streams need every frame): use unix, tcp, shm or inproc");
  }

  Context ctx;
  std::string grpc_note;
  ctx.systems["raw"] = RawSystem();
  ctx.systems["locus"] = LocusSystem();
  ctx.systems["grpc"] = GrpcSystem(&grpc_note);
  bool have_grpc = !ctx.systems["grpc"].transports.empty();
  std::string capnp_note, thrift_note;
  ctx.systems["capnp"] = CapnpSystem(&capnp_note);
  ctx.systems["thrift"] = ThriftSystem(&thrift_note);
  // Optional peer baselines compiled into this build (unix/tcp cases).
  std::vector<std::string> peers;
  std::map<std::string, std::string> peer_notes = {{"capnp", capnp_note}, {"thrift", thrift_note}};
  for (const char* peer : {"capnp", "thrift"}) {
    if (!ctx.systems[peer].transports.empty()) peers.push_back(peer);
  }

  PlanOptions p;
  std::vector<CaseSpec> plan;
  std::string suite = flags.count("suite") ? flags["suite"] : "";
  if (!suite.empty() && flags.count("transport")) Die("give either --suite or --transport, not both");
  if (!suite.empty() && flags.count("rmi")) {
    Die("--rmi goes with --transport: the suites run the remote-object cases already");
  }
  if (suite == "smoke") {
    p.sizes = {64};
    p.outstanding = {1, 4};
    p.calls = 300;
    p.warmup_calls = 50;
    p.transport_outstanding["inproc"] = {1};
    p.rmi_transports = {"unix", "shm"};
    p.rmi_sizes = {64};
    p.rmi_outstanding = {1, 4};
    plan = SuitePlan(p, kSuiteTransports, false);
  } else if (suite == "quick") {
    p.sizes = {64, 4096};
    p.outstanding = {1, 16};
    p.seconds = 0.4;
    p.warmup_seconds = 0.1;
    p.transport_sizes["shm"] = {64, 4096, 1 << 20};
    p.transport_sizes["inproc"] = {64};
    p.transport_outstanding["inproc"] = {1};
    p.rmi_transports = {"unix", "shm"};
    p.rmi_sizes = {64};
    p.rmi_outstanding = {1};
    plan = SuitePlan(p, kSuiteTransports, have_grpc, peers);
  } else if (suite == "full") {
    p.sizes = {64, 1024, 4096, 65536, 1 << 20};
    p.outstanding = {1, 8, 32};
    p.seconds = 2.0;
    p.warmup_seconds = 0.3;
    p.rounds = 3;
    p.transport_outstanding["inproc"] = {1};
    p.rmi_transports = {"unix", "tcp", "shm"};
    p.rmi_sizes = {64, 4096};
    p.rmi_outstanding = {1, 8};
    plan = SuitePlan(p, kSuiteTransports, have_grpc, peers);
  } else if (!suite.empty()) {
    Die("unknown --suite=" + suite + " (smoke, quick, full)");
  }
  // Explicit run-length flags override the suite's.
  if (flags.count("size")) {
    p.sizes.clear();
    for (auto& s : Split(flags["size"])) p.sizes.push_back(std::stoul(s));
  }
  if (flags.count("outstanding")) {
    p.outstanding.clear();
    for (auto& s : Split(flags["outstanding"])) {
      int n = std::stoi(s);
      if (n < 1) Die("--outstanding must be >= 1");
      p.outstanding.push_back(n);
    }
  }
  if (flags.count("calls")) {
    p.calls = std::stoull(flags["calls"]);
    if (!flags.count("warmup-calls") && !flags.count("warmup-seconds")) {
      p.warmup_calls = std::max<uint64_t>(50, std::min<uint64_t>(p.calls / 10, 10000));
    }
  }
  if (flags.count("seconds")) {
    p.seconds = std::stod(flags["seconds"]);
    p.calls = 0;
  }
  if (flags.count("warmup-calls")) p.warmup_calls = std::stoull(flags["warmup-calls"]);
  if (flags.count("warmup-seconds")) {
    p.warmup_seconds = std::stod(flags["warmup-seconds"]);
    p.warmup_calls = 0;
  }
  if (flags.count("rounds")) p.rounds = std::max(1, std::stoi(flags["rounds"]));
  if (flags.count("shm-ring-bytes")) p.shm_ring_bytes = std::stoull(flags["shm-ring-bytes"]);
  if (flags.count("shm-bulk-bytes")) p.shm_bulk_bytes = std::stoll(flags["shm-bulk-bytes"]);
  if (flags.count("shm-spin-us")) p.shm_spin_us = std::stod(flags["shm-spin-us"]);
  if (flags.count("socket-spin-us")) p.socket_spin_us = std::stod(flags["socket-spin-us"]);
  if (!suite.empty() && (flags.count("size") || flags.count("outstanding") || flags.count("calls") ||
                         flags.count("seconds") || flags.count("rounds") || flags.count("warmup-calls") ||
                         flags.count("warmup-seconds"))) {
    // --size / --outstanding apply to every transport (inproc still runs
    // outstanding 1 only); run-length flags keep the suite's per-transport
    // sets (e.g. shm's 1 MiB case).
    if (flags.count("size")) {
      p.transport_sizes.clear();
      p.rmi_sizes = p.sizes;
    }
    if (flags.count("outstanding")) {
      p.transport_outstanding.clear();
      p.rmi_outstanding = p.outstanding;
    }
    plan = SuitePlan(p, kSuiteTransports, have_grpc && suite != "smoke",
                     suite != "smoke" ? peers : std::vector<std::string>{});
  }

  if (suite.empty()) {
    std::string t = flags.count("transport") ? flags["transport"] : "";
    if (t.empty()) Die(std::string("give --suite or --transport\n") + kUsage);
    std::string baselines = flags.count("baselines") ? flags["baselines"] : "all";
    std::vector<std::string> wanted = Split(baselines);
    auto wants = [&](const std::string& b) {
      return baselines == "all" || std::find(wanted.begin(), wanted.end(), b) != wanted.end();
    };
    for (const std::string& b : wanted) {
      if (b != "all" && b != "none" && b != "raw" && b != "grpc" && b != "capnp" && b != "thrift") {
        Die("unknown --baselines entry '" + b + "' (all, none, raw, grpc, capnp, thrift)");
      }
    }
    bool want_raw = wants("raw");
    bool want_grpc = wants("grpc");
    std::vector<std::string> want_peers;
    for (const std::string& peer : {std::string("capnp"), std::string("thrift")}) {
      if (!wants(peer)) continue;
      if (std::find(peers.begin(), peers.end(), peer) != peers.end()) {
        want_peers.push_back(peer);
      } else if (baselines != "all") {
        Die(peer_notes[peer]);
      }
    }
    std::string over = flags.count("over") ? flags["over"] : flags.count("grpc-over") ? flags["grpc-over"] : "unix";
    std::string address = flags.count("address") ? flags["address"] : "";
    std::string base_transport;  // raw / gRPC transport to compare with
    bool locus_case = true;
    if (t == "grpc" || t == "capnp" || t == "thrift") {
      const std::string label = t == "grpc" ? "gRPC C++" : t == "capnp" ? "Cap'n Proto (EzRpc)" : "Thrift";
      base_transport = over;
      if (base_transport == "shm" || base_transport == "inproc" || base_transport == "udp") {
        Die("--over=" + base_transport + ": not available: " + label + " has no " +
            (base_transport == "shm" ? "shared-memory" : base_transport == "inproc" ? "in-process baseline in this harness" : "UDP") +
            " transport here (" + t + " runs over unix or tcp)");
      }
      if (base_transport != "unix" && base_transport != "tcp") Die("--over must be unix or tcp");
      if (t == "grpc" && !have_grpc) Die(grpc_note);
      if (t != "grpc" && ctx.systems[t].transports.empty()) Die(peer_notes[t]);
      locus_case = false;
      want_raw = false;
      want_grpc = t == "grpc";
      want_peers.clear();
      if (t != "grpc") want_peers.push_back(t);
    } else {
      const LocusTransportInfo* info = nullptr;
      for (const auto& ti : LocusTransports()) {
        if (ti.name == t) info = &ti;
      }
      if (info == nullptr) Die("unknown --transport=" + t + " (inproc, shm, unix, tcp, udp, grpc, capnp, thrift, auto)");
      if (!info->available) Die("--transport=" + t + ": transport not available yet: " + info->note);
      if (flags.count("rmi")) {
        if (!RmiTransport(t)) {
          Die("--rmi: the remote-object cases run on unix, tcp and shm, not --transport=" + t);
        }
        if (streaming) Die("--rmi: the remote-object cases are unary calls (no --mode=streaming)");
        p.rmi_transports = {t};
        p.rmi_sizes = p.sizes;
        p.rmi_outstanding = p.outstanding;
      }
      if (t == "auto") {
        if (address.empty()) Die("--transport=auto needs --address (e.g. unix:/tmp/b.sock or tcp://127.0.0.1:7000)");
        base_transport = SchemeTransport(address);
      } else {
        base_transport = t;
      }
    }
    for (int round = 0; round < p.rounds; ++round) {
      for (size_t size : p.sizes) {
        for (int out : p.outstanding) {
          if (want_raw && base_transport == "shm") {
            AddRawShmCases(p, size, out, round, &plan);
          } else if (want_raw && !base_transport.empty()) {
            AddRawSocketCases(p, base_transport, size, out, round, &plan);
          }
          if (locus_case) AddLocusCases(p, t, address, size, out, round, &plan);
          if (want_grpc && have_grpc && !base_transport.empty()) {
            plan.push_back(Make(p, "grpc", GrpcTransportFor(base_transport), out == 1 ? "sync" : "callback",
                                size, out, round));
          }
          if (!base_transport.empty() && base_transport != "udp") {
            for (const std::string& peer : want_peers) {
              plan.push_back(Make(p, peer, GrpcTransportFor(base_transport), "", size, out, round));
            }
          }
        }
      }
    }
  }
  for (CaseSpec& spec : plan) {  // shm knobs apply to suite plans too
    spec.shm_ring_bytes = p.shm_ring_bytes;
    spec.shm_bulk_bytes = p.shm_bulk_bytes;
    spec.shm_spin_us = p.shm_spin_us;
    spec.socket_spin_us = p.socket_spin_us;
  }
  if (streaming) {
    // Locus and gRPC stream; the raw ping-pong stays the floor (a raw
    // ping-pong is a stream already). Cap'n Proto and Thrift have no
    // streaming cases here.
    // Locus over UDP has no streams (datagrams may be lost); the
    // remote-object variants are unary calls.
    plan.erase(std::remove_if(plan.begin(), plan.end(),
                              [](const CaseSpec& s) {
                                return s.system == "capnp" || s.system == "thrift" ||
                                       (s.system == "locus" && s.transport == "udp") ||
                                       (s.system == "locus" && !s.variant.empty());
                              }),
               plan.end());
    for (CaseSpec& spec : plan) {
      if (spec.system != "locus" && spec.system != "grpc") continue;
      spec.streaming = true;
      if (spec.system == "grpc") spec.variant = "sync";  // gRPC's sync streaming API
    }
  }
  if (flags.count("only")) {
    std::string only = flags["only"];
    plan.erase(std::remove_if(plan.begin(), plan.end(), [&](const CaseSpec& s) { return s.system != only; }),
               plan.end());
  }

  if (flags.count("pin")) {
    std::vector<int> cpus = AllowedCpus();
    if (cpus.size() < 2) Die("--pin needs at least 2 CPUs in the affinity mask");
    std::string err;
    if (!PinToCpu(cpus[0], &err)) Die(err);
    ctx.pin = true;
    ctx.server_cpu = cpus[1];
    fprintf(stderr, "locus-bench: client pinned to CPU %d, server to CPU %d\n", cpus[0], cpus[1]);
  }
  // glibc < 2.39 copies >= ~2 KiB with `rep movsb` when the CPU has FSRM,
  // which AMD Zen runs ~10x slower for some buffer placements (BZ 30994):
  // every system's large-message numbers then depend on where malloc put
  // its buffers. Say so; docs/performance.md shows both settings.
  {
    const char* tunables = getenv("GLIBC_TUNABLES");
    if (tunables == nullptr || strstr(tunables, "x86_rep_movsb_threshold") == nullptr) {
      FILE* cpuinfo = fopen("/proc/cpuinfo", "r");
      bool amd = false, fsrm = false;
      char line[4096];
      while (cpuinfo != nullptr && fgets(line, sizeof line, cpuinfo) != nullptr) {
        if (strncmp(line, "vendor_id", 9) == 0 && strstr(line, "AuthenticAMD") != nullptr) amd = true;
        if (strncmp(line, "flags", 5) == 0 && strstr(line, " fsrm") != nullptr) fsrm = true;
      }
      if (cpuinfo != nullptr) fclose(cpuinfo);
      if (amd && fsrm) {
        fprintf(stderr,
                "locus-bench: note: AMD CPU with FSRM and no glibc.cpu.x86_rep_movsb_threshold "
                "tunable: copies of 2 KiB and more may hit glibc's slow rep movsb case (see "
                "docs/performance.md)\n");
      }
    }
  }
  if (flags.count("case-timeout")) ctx.case_timeout = std::stod(flags["case-timeout"]);
  if (flags.count("no-deadlock-detection")) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
    ctx.no_deadlock_detection = true;
  }
  if (flags.count("out")) {
    g_out_file = fopen(flags["out"].c_str(), "a");
    if (g_out_file == nullptr) Die("cannot open --out file " + flags["out"]);
  }
  if (!have_grpc) fprintf(stderr, "locus-bench: note: %s\n", grpc_note.c_str());
  if (suite != "smoke") {
    for (const auto& [peer, note] : peer_notes) {
      if (!note.empty()) fprintf(stderr, "locus-bench: note: %s\n", note.c_str());
    }
  }
  signal(SIGPIPE, SIG_IGN);
  std::thread([] { g_watchdog.Loop(); }).detach();

  std::vector<Outcome> outcomes;
  int failures = 0;
  int index = 0;
  for (const CaseSpec& spec : plan) {
    ++index;
    std::string skip = SkipReason(spec);
    if (!skip.empty()) {
      fprintf(stderr, "  %-24s size=%-8zu out=%-3d skipped: %s\n", spec.Name().c_str(), spec.size,
              spec.outstanding, skip.c_str());
      continue;
    }
    Outcome o{spec, RunCase(ctx, spec)};
    if (!o.stats.ok) ++failures;
    PrintOutcome(ctx, o);
    outcomes.push_back(std::move(o));
  }
  PrintSummary(outcomes);
  if (g_out_file != nullptr) fclose(g_out_file);
  if (failures > 0) {
    fprintf(stderr, "locus-bench: %d case(s) failed\n", failures);
    return 1;
  }
  return 0;
}

int ServerMain(Flags& flags) {
  if (flags.count("no-deadlock-detection")) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
  if (flags.count("cpu")) {
    std::string err;
    if (!PinToCpu(std::stoi(flags["cpu"]), &err)) {
      fprintf(stderr, "locus-bench server: %s\n", err.c_str());
      return 1;
    }
  }
  std::map<std::string, System> systems = {{"raw", RawSystem()}, {"locus", LocusSystem()}};
  std::string note;
  systems["grpc"] = GrpcSystem(&note);
  systems["capnp"] = CapnpSystem(&note);
  systems["thrift"] = ThriftSystem(&note);
  auto it = systems.find(flags["system"]);
  if (it == systems.end() || it->second.serve == nullptr) {
    fprintf(stderr, "locus-bench server: no system %s\n", flags["system"].c_str());
    return 1;
  }
  return it->second.serve(flags);
}

}  // namespace
}  // namespace locus_bench

int main(int argc, char** argv) {
  locus_bench::Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h") arg = "--help";
    if (arg.rfind("--", 0) != 0) locus_bench::Die("unexpected argument " + arg);
    size_t eq = arg.find('=');
    if (eq == std::string::npos) {
      flags[arg.substr(2)] = "1";
    } else {
      flags[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
    }
  }
  if (flags.count("role")) {
    if (flags["role"] != "server") locus_bench::Die("unknown --role");
    flags.erase("role");
    return locus_bench::ServerMain(flags);
  }
  return locus_bench::ClientMain(flags);
}
