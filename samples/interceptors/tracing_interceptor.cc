#include "tracing_interceptor.h"

#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace locus_samples {
namespace {

bool IsLowerHex(absl::string_view text, size_t length) {
  if (text.size() != length) return false;
  bool nonzero = false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    nonzero |= c != '0';
  }
  return nonzero;
}

std::string RandomHex(size_t digits) {
  thread_local std::mt19937_64 random{std::random_device()()};
  std::string out;
  while (out.size() < digits) {
    const uint64_t bits = random();
    for (int i = 0; i < 16 && out.size() < digits; ++i) out.push_back("0123456789abcdef"[(bits >> (4 * i)) & 15]);
  }
  if (out.find_first_not_of('0') == std::string::npos) out.back() = '1';  // all zeros is invalid
  return out;
}

class ClientTracing final : public locus::ClientInterceptor {
 public:
  explicit ClientTracing(std::shared_ptr<SpanRecorder> recorder) : recorder_(std::move(recorder)) {}
  absl::Status OnStart(locus::ClientCallInfo& call) override {
    std::optional<TraceContext> parent =
        TraceContext::Parse(locus::MetadataValue(call.metadata(), kTraceparent));
    span_.name = std::string(call.method_name());
    TraceContext context = parent.has_value() ? parent->NewChild() : TraceContext::NewTrace();
    span_.trace_id = context.trace_id;
    span_.span_id = context.span_id;
    if (parent.has_value()) span_.parent_span_id = parent->span_id;
    // One traceparent, naming this span.
    locus::Metadata& metadata = call.metadata();
    for (auto it = metadata.begin(); it != metadata.end();) {
      it = absl::EqualsIgnoreCase(it->first, kTraceparent) ? metadata.erase(it) : it + 1;
    }
    metadata.emplace_back(std::string(kTraceparent), context.ToTraceparent());
    return absl::OkStatus();
  }
  void OnFinish(locus::ClientCallInfo&, absl::Status& status) override {
    span_.code = status.code();
    recorder_->Record(std::move(span_));
  }

 private:
  const std::shared_ptr<SpanRecorder> recorder_;
  Span span_;
};

class ServerTracing final : public locus::ServerInterceptor {
 public:
  explicit ServerTracing(std::shared_ptr<SpanRecorder> recorder) : recorder_(std::move(recorder)) {}
  absl::Status OnStart(locus::ServerCallInfo& call) override {
    std::optional<TraceContext> parent =
        TraceContext::Parse(call.context().client_metadata_value(kTraceparent));
    TraceContext context = parent.has_value() ? parent->NewChild() : TraceContext::NewTrace();
    span_.name = std::string(call.method_name());
    span_.server = true;
    span_.trace_id = context.trace_id;
    span_.span_id = context.span_id;
    if (parent.has_value()) span_.parent_span_id = parent->span_id;
    // Calls the handler makes on this call's behalf continue this span.
    call.context().AddPropagatedMetadata(std::string(kTraceparent), context.ToTraceparent());
    return absl::OkStatus();
  }
  void OnFinish(locus::ServerCallInfo&, absl::Status& status) override {
    span_.code = status.code();
    recorder_->Record(std::move(span_));
  }

 private:
  const std::shared_ptr<SpanRecorder> recorder_;
  Span span_;
};

}  // namespace

std::optional<TraceContext> TraceContext::Parse(absl::string_view traceparent) {
  std::vector<absl::string_view> parts = absl::StrSplit(traceparent, '-');
  if (parts.size() != 4 || parts[0] != "00" || !IsLowerHex(parts[1], 32) || !IsLowerHex(parts[2], 16) ||
      parts[3].size() != 2 || !absl::ascii_isxdigit(parts[3][0]) || !absl::ascii_isxdigit(parts[3][1])) {
    return std::nullopt;
  }
  TraceContext context;
  context.trace_id = std::string(parts[1]);
  context.span_id = std::string(parts[2]);
  const int low = absl::ascii_isdigit(parts[3][1]) ? parts[3][1] - '0' : absl::ascii_tolower(parts[3][1]) - 'a' + 10;
  context.sampled = (low & 1) != 0;
  return context;
}

TraceContext TraceContext::NewTrace() {
  TraceContext context;
  context.trace_id = RandomHex(32);
  context.span_id = RandomHex(16);
  return context;
}

TraceContext TraceContext::NewChild() const {
  TraceContext child = *this;
  child.span_id = RandomHex(16);
  return child;
}

std::string TraceContext::ToTraceparent() const {
  return absl::StrCat("00-", trace_id, "-", span_id, sampled ? "-01" : "-00");
}

void SpanRecorder::Record(Span span) {
  absl::MutexLock lock(&mu_);
  spans_.push_back(std::move(span));
}

std::vector<Span> SpanRecorder::spans() const {
  absl::MutexLock lock(&mu_);
  return spans_;
}

std::unique_ptr<locus::ClientInterceptor> TracingClientInterceptorFactory::Create(
    const locus::ClientCallInfo&) {
  return std::make_unique<ClientTracing>(recorder_);
}

std::unique_ptr<locus::ServerInterceptor> TracingServerInterceptorFactory::Create(
    const locus::ServerCallInfo&) {
  return std::make_unique<ServerTracing>(recorder_);
}

}  // namespace locus_samples
