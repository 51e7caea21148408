// A warmup + measured-window driver for baseline clients that run their own
// loop (an event loop, or batches of pipelined calls) instead of one
// blocking call (RunSyncLoop) or callbacks (AsyncDriver). Used by the Cap'n
// Proto and Thrift baselines.
#ifndef LOCUS_BENCH_HARNESS_PHASED_LOOP_H_
#define LOCUS_BENCH_HARNESS_PHASED_LOOP_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "harness/common.h"

namespace locus_bench {

// One phase (warmup or measured): the client starts calls while MayStart()
// and reports each completed call's latency with Record().
struct Phase {
  uint64_t limit = 0;                   // calls to start (count-bounded phase)
  uint64_t end_ns = 0;                  // != 0: time-bounded phase
  std::vector<uint32_t>* lat = nullptr; // measured phase only
  uint64_t started = 0;
  uint64_t done = 0;

  bool MayStart() const {
    if (g_abort.load(std::memory_order_relaxed)) return false;
    if (lat != nullptr && started >= lat->size()) return false;
    if (end_ns != 0) return NowNs() < end_ns;
    return started < limit;
  }
  void Record(uint64_t ns) {
    if (lat != nullptr && done < lat->size()) {
      (*lat)[done] = ns > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(ns);
    }
    ++done;
  }
};

// Runs `run` (returns false with `*err` on failure) once for warmup and once
// for the measured window per `spec`.
inline RunResult RunPhased(const CaseSpec& spec, WindowHooks& hooks,
                           const std::function<bool(Phase& phase, std::string* err)>& run) {
  RunResult r;
  std::string err;
  uint64_t t0 = NowNs();
  Phase warm;
  if (spec.warmup_calls > 0) {
    warm.limit = spec.warmup_calls;
  } else {
    warm.end_ns = t0 + static_cast<uint64_t>(spec.warmup_seconds * 1e9);
  }
  if (!run(warm, &err)) {
    r.error = "warmup call failed: " + err;
    return r;
  }
  uint64_t cap = spec.calls;
  if (cap == 0) {
    uint64_t warm_ns = NowNs() - t0;
    double rate = warm_ns > 0 ? warm.done * 1e9 / warm_ns : 1e6;
    cap = static_cast<uint64_t>(std::min(rate * spec.seconds * 2.0 + 10000, 100e6));
  }
  r.lat_ns.assign(cap, 0);  // touch the pages now, not in the window
  Phase measured;
  measured.lat = &r.lat_ns;
  hooks.Begin();
  double cpu0 = SelfCpuUs();
  uint64_t start = NowNs();
  if (spec.calls > 0) {
    measured.limit = spec.calls;
  } else {
    measured.end_ns = start + static_cast<uint64_t>(spec.seconds * 1e9);
  }
  bool ok = run(measured, &err);
  uint64_t stop = NowNs();
  r.client_cpu_us = SelfCpuUs() - cpu0;
  hooks.End();
  r.elapsed_s = (stop - start) / 1e9;
  r.lat_ns.resize(std::min<uint64_t>(measured.done, cap));
  if (!ok) r.error = "call failed: " + err;
  if (g_abort.load()) r.error = "aborted by watchdog";
  return r;
}

}  // namespace locus_bench

#endif  // LOCUS_BENCH_HARNESS_PHASED_LOOP_H_
