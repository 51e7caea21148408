#include "harness/common.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <thread>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace locus_bench {

std::atomic<bool> g_abort{false};

std::string CaseSpec::Name() const {
  std::string name = system + "_" + transport;
  if (!variant.empty()) name += "_" + variant;
  if (streaming) name += "_stream";
  return name;
}

double SelfCpuUs() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 +
         ru.ru_stime.tv_usec;
}

RunResult RunStreamingCase(const CaseSpec& spec, WindowHooks& hooks, uint64_t window_bytes,
                           const std::function<bool()>& write, const std::function<bool()>& read,
                           const std::function<void()>& writes_done) {
  if (spec.outstanding == 1) {
    RunResult r = RunSyncLoop(spec, hooks, [&](std::string* err) {
      if (!write() || !read()) {
        *err = "stream ended";
        return false;
      }
      return true;
    });
    writes_done();
    return r;
  }
  std::mutex mu;
  std::condition_variable cv;
  std::deque<int> to_write;   // slots whose message is due (guarded by mu)
  std::deque<int> in_flight;  // slots written, in stream order (guarded by mu)
  bool stop = false;          // guarded by mu
  // When all messages in flight fit the flow-control window, the thread
  // that reads an echo writes the next message itself, as the unary
  // callback cases do: one thread, no hand-off. Otherwise a writer thread
  // writes, so that a write waiting for window never stops the reads that
  // would grant it.
  const bool inline_writes = spec.outstanding * (spec.size + 64) <= window_bytes;
  std::mutex write_mu;  // inline writes come from the driver and the reader thread
  AsyncDriver* driver_ptr = nullptr;
  AsyncDriver driver(spec, [&](int slot) {
    if (inline_writes) {
      bool ok;
      {
        std::lock_guard<std::mutex> write_lock(write_mu);
        {
          std::lock_guard<std::mutex> lock(mu);
          in_flight.push_back(slot);
        }
        ok = write();
        if (!ok) {
          std::lock_guard<std::mutex> lock(mu);
          in_flight.erase(std::find(in_flight.begin(), in_flight.end(), slot));
        }
      }
      if (!ok) driver_ptr->Complete(slot, false, "stream write failed");
      return;
    }
    std::lock_guard<std::mutex> lock(mu);
    to_write.push_back(slot);
    cv.notify_one();
  });
  driver_ptr = &driver;
  std::thread writer([&] {
    if (inline_writes) return;
    for (;;) {
      int slot;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return stop || !to_write.empty(); });
        if (to_write.empty()) return;
        slot = to_write.front();
        to_write.pop_front();
        in_flight.push_back(slot);  // before the write: the echo may beat us back
      }
      if (!write()) {
        {
          std::lock_guard<std::mutex> lock(mu);
          in_flight.erase(std::find(in_flight.begin(), in_flight.end(), slot));
        }
        driver_ptr->Complete(slot, false, "stream write failed");
      }
    }
  });
  std::thread reader([&] {
    for (;;) {
      const bool ok = read();
      int slot = -1;
      std::deque<int> orphans;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (ok && !in_flight.empty()) {
          slot = in_flight.front();
          in_flight.pop_front();
        } else if (!ok) {
          orphans.swap(in_flight);
        }
      }
      if (!ok) {
        for (int s : orphans) driver_ptr->Complete(s, false, "stream ended");
        return;
      }
      if (slot >= 0) driver_ptr->Complete(slot, true, "");
    }
  });
  RunResult r = driver.Run(hooks);
  {
    std::lock_guard<std::mutex> lock(mu);
    stop = true;
    cv.notify_all();
  }
  writer.join();
  writes_done();  // the server ends the stream; the reader sees the end
  reader.join();
  return r;
}

double PercentileUs(const std::vector<uint32_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t idx = static_cast<size_t>(std::ceil(q * sorted.size()));
  if (idx > 0) --idx;
  if (idx >= sorted.size()) idx = sorted.size() - 1;
  return sorted[idx] / 1000.0;
}

namespace {
inline uint32_t Clamp32(uint64_t ns) { return ns > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(ns); }

// Capacity of the latency vector for a duration-bounded run, from the rate
// seen in warmup (the run stops early if it fills up).
uint64_t CapacityFor(const CaseSpec& spec, uint64_t warm_calls, uint64_t warm_ns) {
  if (spec.calls > 0) return spec.calls;
  double rate = warm_ns > 0 ? warm_calls * 1e9 / warm_ns : 1e6;
  double cap = rate * spec.seconds * 2.0 + 10000;
  return static_cast<uint64_t>(std::min(cap, 100e6));
}
}  // namespace

RunResult RunSyncLoop(const CaseSpec& spec, WindowHooks& hooks,
                      const std::function<bool(std::string* err)>& call) {
  RunResult r;
  std::string err;
  uint64_t t0 = NowNs();
  uint64_t warm_end = t0 + static_cast<uint64_t>(spec.warmup_seconds * 1e9);
  uint64_t warm = 0;
  while (spec.warmup_calls > 0 ? warm < spec.warmup_calls : NowNs() < warm_end) {
    if (g_abort.load(std::memory_order_relaxed)) {
      r.error = "aborted by watchdog";
      return r;
    }
    if (!call(&err)) {
      r.error = "warmup call failed: " + err;
      return r;
    }
    ++warm;
  }
  const uint64_t batch = spec.batch > 1 ? static_cast<uint64_t>(spec.batch) : 1;
  CaseSpec sized = spec;
  if (batch > 1 && sized.calls > 0) sized.calls = (sized.calls + batch - 1) / batch;
  uint64_t cap = CapacityFor(sized, warm / batch, NowNs() - t0);  // samples
  r.lat_ns.assign(cap, 0);  // touch the pages now, not in the window
  r.calls_per_sample = batch;
  hooks.Begin();
  double cpu0 = SelfCpuUs();
  uint64_t start = NowNs();
  uint64_t end = start + static_cast<uint64_t>(spec.seconds * 1e9);
  uint64_t n = 0;
  uint32_t* lat = r.lat_ns.data();
  bool failed = false;
  while (n < cap) {
    uint64_t a = NowNs();
    for (uint64_t i = 0; i < batch; ++i) {
      if (!call(&err)) {
        r.error = "call failed: " + err;
        failed = true;
        break;
      }
    }
    if (failed) break;
    uint64_t b = NowNs();
    lat[n++] = Clamp32((b - a) / batch);
    if (spec.calls == 0 && b >= end) break;
    if ((n & 255) == 0 && g_abort.load(std::memory_order_relaxed)) {
      r.error = "aborted by watchdog";
      break;
    }
  }
  uint64_t stop = NowNs();
  r.client_cpu_us = SelfCpuUs() - cpu0;
  hooks.End();
  r.elapsed_s = (stop - start) / 1e9;
  r.lat_ns.resize(n);
  return r;
}

AsyncDriver::AsyncDriver(const CaseSpec& spec, StartFn start)
    : spec_(spec), start_(std::move(start)), slot_start_(spec.outstanding) {}

void AsyncDriver::Complete(int slot, bool ok, const std::string& err) {
  uint64_t t = NowNs();
  if (!ok) {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.empty()) error_ = err;
    failed_.store(true);
  } else {
    uint64_t i = recorded_.fetch_add(1, std::memory_order_relaxed);
    if (measure_ && i < lat_->size()) (*lat_)[i] = Clamp32(t - slot_start_[slot]);
  }
  bool again = ok && !failed_.load(std::memory_order_relaxed) && !g_abort.load(std::memory_order_relaxed);
  if (again) {
    if (end_ns_ != 0) {
      again = t < end_ns_ && recorded_.load(std::memory_order_relaxed) + spec_.outstanding <
                                 (measure_ ? lat_->size() : UINT64_MAX);
    } else {
      again = started_.fetch_add(1, std::memory_order_relaxed) < limit_;
    }
  }
  if (again) {
    slot_start_[slot] = NowNs();
    start_(slot);
    return;
  }
  if (inflight_.fetch_sub(1) == 1) {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }
}

void AsyncDriver::Phase(uint64_t limit, uint64_t end_ns, bool measure) {
  limit_ = limit;
  end_ns_ = end_ns;
  measure_ = measure;
  recorded_.store(0);
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = false;
  }
  int n = static_cast<int>(std::min<uint64_t>(spec_.outstanding, limit));
  if (n == 0) return;
  inflight_.store(n);
  started_.store(n);
  for (int slot = 0; slot < n; ++slot) {
    slot_start_[slot] = NowNs();
    start_(slot);
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return done_; });
}

RunResult AsyncDriver::Run(WindowHooks& hooks) {
  RunResult r;
  uint64_t t0 = NowNs();
  if (spec_.warmup_calls > 0) {
    Phase(spec_.warmup_calls, 0, false);
  } else {
    Phase(UINT64_MAX, t0 + static_cast<uint64_t>(spec_.warmup_seconds * 1e9), false);
  }
  if (failed_.load()) {
    r.error = "warmup call failed: " + error_;
    return r;
  }
  uint64_t cap = CapacityFor(spec_, recorded_.load(), NowNs() - t0);
  r.lat_ns.assign(cap, 0);
  lat_ = &r.lat_ns;
  hooks.Begin();
  double cpu0 = SelfCpuUs();
  uint64_t start = NowNs();
  if (spec_.calls > 0) {
    Phase(spec_.calls, 0, true);
  } else {
    Phase(UINT64_MAX, start + static_cast<uint64_t>(spec_.seconds * 1e9), true);
  }
  uint64_t stop = NowNs();
  r.client_cpu_us = SelfCpuUs() - cpu0;
  hooks.End();
  r.elapsed_s = (stop - start) / 1e9;
  r.lat_ns.resize(std::min<uint64_t>(recorded_.load(), cap));
  if (failed_.load()) r.error = "call failed: " + error_;
  if (g_abort.load()) r.error = "aborted by watchdog";
  return r;
}

// ---- ServerProcess ---------------------------------------------------------

bool ServerProcess::Spawn(const std::string& argv0, const std::vector<std::string>& args,
                          int keep_fd, std::string* err) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
    *err = std::string("pipe: ") + strerror(errno);
    return false;
  }
  std::vector<std::string> all = {argv0};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    *err = std::string("fork: ") + strerror(errno);
    return false;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    dup2(in[0], 0);
    dup2(out[1], 1);
    if (keep_fd >= 0) fcntl(keep_fd, F_SETFD, 0);
    // LOCUS_BENCH_EXE: the binary to run as the server, for running the
    // client under a tool (valgrind's /proc/self/exe is valgrind itself).
    const char* exe = getenv("LOCUS_BENCH_EXE");
    execv(exe != nullptr && *exe != '\0' ? exe : "/proc/self/exe", argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  pid_ = pid;
  to_child_ = in[1];
  from_child_ = out[0];
  return true;
}

bool ServerProcess::ReadLine(double timeout_s, std::string* line) {
  uint64_t deadline = NowNs() + static_cast<uint64_t>(timeout_s * 1e9);
  for (;;) {
    size_t nl = buf_.find('\n');
    if (nl != std::string::npos) {
      *line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return true;
    }
    uint64_t now = NowNs();
    if (now >= deadline) return false;
    struct pollfd p = {from_child_, POLLIN, 0};
    int rc = poll(&p, 1, static_cast<int>((deadline - now) / 1000000 + 1));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return false;
    char tmp[256];
    ssize_t n = read(from_child_, tmp, sizeof tmp);
    if (n <= 0) return false;
    buf_.append(tmp, n);
  }
}

bool ServerProcess::WaitReady(double timeout_s, std::string* address, std::string* err) {
  std::string line;
  if (!ReadLine(timeout_s, &line)) {
    *err = "server process did not become ready (see its stderr above)";
    return false;
  }
  if (line.rfind("READY ", 0) != 0) {
    *err = "unexpected line from server: " + line;
    return false;
  }
  *address = line.substr(6);
  address_ = *address;
  return true;
}

double ServerProcess::CpuUs() {
  if (write(to_child_, "cpu\n", 4) != 4) return -1;
  std::string line;
  if (!ReadLine(5.0, &line) || line.rfind("CPU ", 0) != 0) return -1;
  return atof(line.c_str() + 4);
}

void ServerProcess::Kill() {
  if (to_child_ >= 0) close(to_child_);
  if (from_child_ >= 0) close(from_child_);
  to_child_ = from_child_ = -1;
  if (pid_ > 0) {
    // The server leaves its control loop on EOF and exits: given a moment,
    // it does (so that a tool wrapping it, see LOCUS_BENCH_EXE, writes its
    // results). One that does not is killed.
    bool exited = false;
    for (int i = 0; i < 500 && !exited; ++i) {
      const pid_t r = waitpid(pid_, nullptr, WNOHANG);
      exited = r == pid_ || (r < 0 && errno != EINTR);
      if (!exited) usleep(10000);
    }
    if (!exited) {
      kill(pid_, SIGKILL);
      while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    pid_ = -1;
  }
  // A killed server cannot remove its Unix socket file: do it for it.
  for (const char* scheme : {"unix:", "shm:"}) {
    if (address_.rfind(scheme, 0) == 0 && address_.size() > strlen(scheme) &&
        address_[strlen(scheme)] == '/') {
      unlink(address_.c_str() + strlen(scheme));
    }
  }
  address_.clear();
}

void ServeControlLoop(const std::string& address) {
  printf("READY %s\n", address.c_str());
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin) != nullptr) {
    if (strncmp(line, "cpu", 3) == 0) {
      printf("CPU %.1f\n", SelfCpuUs());
      fflush(stdout);
    }
  }
  _exit(0);
}

bool PinToCpu(int cpu, std::string* err) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    *err = std::string("sched_setaffinity: ") + strerror(errno);
    return false;
  }
  return true;
}

std::vector<int> AllowedCpus() {
  cpu_set_t set;
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int i = 0; i < CPU_SETSIZE; ++i) {
    if (CPU_ISSET(i, &set)) cpus.push_back(i);
  }
  return cpus;
}

// ---- JSON ------------------------------------------------------------------

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

void JsonLine::Key(const std::string& key) {
  if (!body_.empty()) body_ += ",";
  body_ += "\"" + JsonEscape(key) + "\":";
}
JsonLine& JsonLine::Str(const std::string& key, const std::string& value) {
  Key(key);
  body_ += "\"" + JsonEscape(value) + "\"";
  return *this;
}
JsonLine& JsonLine::Num(const std::string& key, double value) {
  Key(key);
  if (!std::isfinite(value)) {
    body_ += "null";
    return *this;
  }
  char buf[64];
  snprintf(buf, sizeof buf, "%.3f", value);
  body_ += buf;
  return *this;
}
JsonLine& JsonLine::Int(const std::string& key, int64_t value) {
  Key(key);
  body_ += std::to_string(value);
  return *this;
}
JsonLine& JsonLine::Bool(const std::string& key, bool value) {
  Key(key);
  body_ += value ? "true" : "false";
  return *this;
}

}  // namespace locus_bench
