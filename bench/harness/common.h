// Shared pieces of locus-bench: what a case is, how a client measures it,
// and the plumbing between the client process and its server process.
//
// Process model: the process you start is the client. For every case it
// fork+execs itself with `--role=server ...` (one server process per case,
// killed and reaped after the case), talks to it over stdin/stdout pipes
// (READY line, CPU-time queries) and measures calls from its own process.
#ifndef LOCUS_BENCH_HARNESS_COMMON_H_
#define LOCUS_BENCH_HARNESS_COMMON_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace locus_bench {

using Clock = std::chrono::steady_clock;

inline uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// Set by the watchdog when a case overruns; every client loop checks it.
extern std::atomic<bool> g_abort;

// One benchmark case as the client runs it.
struct CaseSpec {
  std::string system;     // "raw", "locus", "grpc", "capnp", "thrift"
  std::string transport;  // requested: "unix", "tcp", "udp", "shm", "inproc", "auto"
  std::string variant;    // raw shm: "spin" | "adaptive"; grpc: "sync" | "callback"; else ""
  std::string address;    // explicit address (auto, or user-given); "" = harness picks
  size_t size = 64;       // request and reply payload bytes
  int outstanding = 1;    // 1 = sync ping-pong; N = N calls in flight
  // --mode=streaming (locus, grpc): one bidirectional stream per case, each
  // "call" a message echoed on it; outstanding N = N messages in flight.
  bool streaming = false;
  uint64_t calls = 0;     // measured calls (0: use seconds)
  double seconds = 1.0;   // measured duration when calls == 0
  uint64_t warmup_calls = 0;
  double warmup_seconds = 0.1;
  int round = 0;
  // Sync loop only: calls per timed sample. 1 = every call timed on its own;
  // N > 1 = N back-to-back calls timed together and recorded as one sample of
  // their mean (for calls so short that two clock reads would dominate, e.g.
  // in-process calls). Percentiles are then over batch means.
  int batch = 1;
  // Locus shm knobs (0 / negative: the library defaults).
  uint64_t shm_ring_bytes = 0;  // ChannelOptions::shm_ring_bytes
  int64_t shm_bulk_bytes = -1;  // ChannelOptions::shm_bulk_bytes (-1: default)
  double shm_spin_us = -1;      // ChannelOptions / ServerOptions::shm_spin
  double socket_spin_us = -1;   // ChannelOptions / ServerOptions::socket_spin

  // e.g. "locus_unix", "raw_shm_spin", "grpc_tcp_callback".
  std::string Name() const;
};

// What a client run produced.
struct RunResult {
  std::string error;            // non-empty: the case failed
  std::string transport;        // what the connection actually ended on
  std::vector<uint32_t> lat_ns; // per-call latency of the measured calls
                                // (per-call mean of a batch when spec.batch > 1)
  uint64_t calls_per_sample = 1; // calls each lat_ns entry stands for
  double elapsed_s = 0;         // measured window
  double client_cpu_us = 0;     // CPU time over the window
  double server_cpu_us = 0;
  std::string note;
};

// CPU time of this process (all threads), microseconds.
double SelfCpuUs();

// Called by clients right before and after the measured window.
class WindowHooks {
 public:
  virtual ~WindowHooks() = default;
  virtual void Begin() = 0;
  virtual void End() = 0;
};

// Runs `call` (one synchronous round trip; false = failed, `*err` set)
// through warmup and the measured window per `spec` (timing each call, or
// each batch of spec.batch calls).
RunResult RunSyncLoop(const CaseSpec& spec, WindowHooks& hooks,
                      const std::function<bool(std::string* err)>& call);

// Keeps spec.outstanding calls in flight. `start(slot)` starts one call
// on slot `slot`; the call's completion must call `driver.Complete(slot, ok,
// err)` exactly once, from any thread (even from inside start()).
class AsyncDriver {
 public:
  using StartFn = std::function<void(int slot)>;
  AsyncDriver(const CaseSpec& spec, StartFn start);
  RunResult Run(WindowHooks& hooks);
  void Complete(int slot, bool ok, const std::string& err);

 private:
  void Phase(uint64_t limit, uint64_t end_ns, bool measure);

  const CaseSpec& spec_;
  StartFn start_;
  std::vector<uint64_t> slot_start_;
  std::vector<uint32_t>* lat_ = nullptr;
  std::atomic<uint64_t> recorded_{0};
  std::atomic<uint64_t> started_{0};
  std::atomic<int> inflight_{0};
  std::atomic<bool> failed_{false};
  bool done_ = false;  // guarded by mu_
  uint64_t limit_ = 0;
  uint64_t end_ns_ = 0;
  bool measure_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string error_;  // guarded by mu_
};

// One echo stream per case (--mode=streaming): `write` sends a message and
// `read` receives an echo (false: the stream broke or ended); `writes_done`
// half-closes when the case is over. outstanding=1 times write+read pairs
// (RunSyncLoop); N > 1 keeps N messages in flight, matched in order by a
// reader thread, which also writes the next message when all in flight fit
// in `window_bytes` (the system's flow-control window per stream; else a
// writer thread writes, so that a write waiting for window never stops the
// reads that would grant it).
RunResult RunStreamingCase(const CaseSpec& spec, WindowHooks& hooks, uint64_t window_bytes,
                           const std::function<bool()>& write, const std::function<bool()>& read,
                           const std::function<void()>& writes_done);

// Percentile (0..1) of sorted nanosecond latencies, in microseconds.
double PercentileUs(const std::vector<uint32_t>& sorted, double q);

// ---- Server process ------------------------------------------------------

// A server child process (this binary with --role=server).
class ServerProcess {
 public:
  ~ServerProcess() { Kill(); }
  // Spawns `argv0 args...`; `keep_fd` (>= 0) stays open in the child.
  bool Spawn(const std::string& argv0, const std::vector<std::string>& args, int keep_fd,
             std::string* err);
  // Waits for "READY <address>"; returns the address.
  bool WaitReady(double timeout_s, std::string* address, std::string* err);
  // Asks the server for its CPU time (microseconds); -1 on failure.
  double CpuUs();
  void Kill();
  pid_t pid() const { return pid_; }

 private:
  bool ReadLine(double timeout_s, std::string* line);
  pid_t pid_ = -1;
  std::string address_;  // from READY: a Unix socket file is removed by Kill()
  int to_child_ = -1;
  int from_child_ = -1;
  std::string buf_;
};

// In the server process: prints READY, then answers "cpu" queries on stdin
// until stdin closes (the client died or is done), then _exit(0).
[[noreturn]] void ServeControlLoop(const std::string& address);

// Parsed --key=value flags.
using Flags = std::map<std::string, std::string>;

// Pins the calling thread (and threads it creates later) to `cpu`.
bool PinToCpu(int cpu, std::string* err);
// The CPUs this process may run on.
std::vector<int> AllowedCpus();

// Minimal JSON object writer for one output line.
class JsonLine {
 public:
  JsonLine& Str(const std::string& key, const std::string& value);
  JsonLine& Num(const std::string& key, double value);
  JsonLine& Int(const std::string& key, int64_t value);
  JsonLine& Bool(const std::string& key, bool value);
  std::string Done() const { return "{" + body_ + "}"; }

 private:
  void Key(const std::string& key);
  std::string body_;
};
std::string JsonEscape(const std::string& s);

}  // namespace locus_bench

#endif  // LOCUS_BENCH_HARNESS_COMMON_H_
