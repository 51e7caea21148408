// A metrics interceptor: per-method call counts by status code and a
// latency histogram, for the calls of a channel (client side) or a server.
//
// Example:
//   auto metrics = std::make_shared<locus_samples::CallMetrics>();
//   locus::ServerOptions options;
//   options.interceptors.push_back(
//       std::make_shared<locus_samples::MetricsServerInterceptorFactory>(metrics));
//   ...
//   std::cout << metrics->Report();
#ifndef LOCUS_SAMPLES_INTERCEPTORS_METRICS_INTERCEPTOR_H_
#define LOCUS_SAMPLES_INTERCEPTORS_METRICS_INTERCEPTOR_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "locus/interceptor.h"

namespace locus_samples {

// What the interceptors record. Thread-safe.
class CallMetrics {
 public:
  struct MethodStats {
    int64_t calls = 0;
    std::map<absl::StatusCode, int64_t> by_code;
    // latency_buckets[i]: calls that took at most BucketBounds()[i] (and
    // more than the bound before); the last one: the rest.
    std::vector<int64_t> latency_buckets;
    absl::Duration total_latency;
  };

  // Upper bounds of the latency buckets: 25 us to 10 s, about x2.5 apart.
  static const std::vector<absl::Duration>& BucketBounds();

  void Record(absl::string_view method, absl::StatusCode code, absl::Duration latency);
  // The stats of `method` ("/pkg.Svc/Method"); empty if it had no calls.
  MethodStats Get(absl::string_view method) const;
  std::vector<std::string> Methods() const;
  // A text table: one block per method with its codes and histogram.
  std::string Report() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, MethodStats, std::less<>> stats_ ABSL_GUARDED_BY(mu_);
};

// Records each call of a channel when it ends, with the status its caller gets.
class MetricsClientInterceptorFactory final : public locus::ClientInterceptorFactory {
 public:
  explicit MetricsClientInterceptorFactory(std::shared_ptr<CallMetrics> metrics)
      : metrics_(std::move(metrics)) {}
  std::unique_ptr<locus::ClientInterceptor> Create(const locus::ClientCallInfo& call) override;

 private:
  const std::shared_ptr<CallMetrics> metrics_;
};

// Records each call a server serves (rejected ones too) when its handler
// returned, with the status the client gets.
class MetricsServerInterceptorFactory final : public locus::ServerInterceptorFactory {
 public:
  explicit MetricsServerInterceptorFactory(std::shared_ptr<CallMetrics> metrics)
      : metrics_(std::move(metrics)) {}
  std::unique_ptr<locus::ServerInterceptor> Create(const locus::ServerCallInfo& call) override;

 private:
  const std::shared_ptr<CallMetrics> metrics_;
};

}  // namespace locus_samples

#endif  // LOCUS_SAMPLES_INTERCEPTORS_METRICS_INTERCEPTOR_H_
