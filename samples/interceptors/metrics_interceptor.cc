#include "metrics_interceptor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace locus_samples {
namespace {

std::string FormatBound(absl::Duration bound) { return absl::FormatDuration(bound); }

class ClientMetrics final : public locus::ClientInterceptor {
 public:
  explicit ClientMetrics(std::shared_ptr<CallMetrics> metrics) : metrics_(std::move(metrics)) {}
  absl::Status OnStart(locus::ClientCallInfo&) override {
    start_ = absl::Now();
    return absl::OkStatus();
  }
  void OnFinish(locus::ClientCallInfo& call, absl::Status& status) override {
    metrics_->Record(call.method_name(), status.code(), absl::Now() - start_);
  }

 private:
  const std::shared_ptr<CallMetrics> metrics_;
  absl::Time start_ = absl::Now();
};

class ServerMetrics final : public locus::ServerInterceptor {
 public:
  explicit ServerMetrics(std::shared_ptr<CallMetrics> metrics) : metrics_(std::move(metrics)) {}
  absl::Status OnStart(locus::ServerCallInfo&) override {
    start_ = absl::Now();
    return absl::OkStatus();
  }
  void OnFinish(locus::ServerCallInfo& call, absl::Status& status) override {
    metrics_->Record(call.method_name(), status.code(), absl::Now() - start_);
  }

 private:
  const std::shared_ptr<CallMetrics> metrics_;
  absl::Time start_ = absl::Now();
};

}  // namespace

const std::vector<absl::Duration>& CallMetrics::BucketBounds() {
  static const std::vector<absl::Duration>* bounds = [] {
    auto* out = new std::vector<absl::Duration>();
    for (int64_t us : {25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
                       500000, 1000000, 2500000, 5000000, 10000000}) {
      out->push_back(absl::Microseconds(us));
    }
    return out;
  }();
  return *bounds;
}

void CallMetrics::Record(absl::string_view method, absl::StatusCode code, absl::Duration latency) {
  const std::vector<absl::Duration>& bounds = BucketBounds();
  const size_t bucket =
      std::lower_bound(bounds.begin(), bounds.end(), latency) - bounds.begin();  // bounds.size(): beyond
  absl::MutexLock lock(&mu_);
  auto it = stats_.find(method);
  if (it == stats_.end()) it = stats_.emplace(std::string(method), MethodStats()).first;
  MethodStats& stats = it->second;
  if (stats.latency_buckets.empty()) stats.latency_buckets.assign(bounds.size() + 1, 0);
  ++stats.calls;
  ++stats.by_code[code];
  ++stats.latency_buckets[bucket];
  stats.total_latency += latency;
}

CallMetrics::MethodStats CallMetrics::Get(absl::string_view method) const {
  absl::MutexLock lock(&mu_);
  auto it = stats_.find(method);
  return it == stats_.end() ? MethodStats() : it->second;
}

std::vector<std::string> CallMetrics::Methods() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [method, stats] : stats_) out.push_back(method);
  return out;
}

std::string CallMetrics::Report() const {
  const std::vector<absl::Duration>& bounds = BucketBounds();
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [method, stats] : stats_) {
    absl::StrAppendFormat(&out, "%s: %d calls, mean %s\n", method, stats.calls,
                          absl::FormatDuration(stats.total_latency / std::max<int64_t>(stats.calls, 1)));
    for (const auto& [code, count] : stats.by_code) {
      absl::StrAppendFormat(&out, "  %-20s %d\n", absl::StatusCodeToString(code), count);
    }
    for (size_t i = 0; i < stats.latency_buckets.size(); ++i) {
      if (stats.latency_buckets[i] == 0) continue;
      const std::string label = i < bounds.size() ? absl::StrCat("<= ", FormatBound(bounds[i]))
                                                  : absl::StrCat("> ", FormatBound(bounds.back()));
      absl::StrAppendFormat(&out, "  %-10s %s %d\n", label,
                            std::string(static_cast<size_t>(std::min<int64_t>(stats.latency_buckets[i], 40)), '#'),
                            stats.latency_buckets[i]);
    }
  }
  return out;
}

std::unique_ptr<locus::ClientInterceptor> MetricsClientInterceptorFactory::Create(
    const locus::ClientCallInfo&) {
  return std::make_unique<ClientMetrics>(metrics_);
}

std::unique_ptr<locus::ServerInterceptor> MetricsServerInterceptorFactory::Create(
    const locus::ServerCallInfo&) {
  return std::make_unique<ServerMetrics>(metrics_);
}

}  // namespace locus_samples
