// Tracing with W3C Trace Context propagation: each call is a span; the
// `traceparent` metadata entry ("00-<trace id>-<parent span id>-<flags>")
// carries the trace from client to server, and a handler's calls made with
// locus::CallOptions::FromServerContext carry it on (the server interceptor
// puts its span there with ServerContext::AddPropagatedMetadata), so one
// trace id crosses every hop: client -> A -> B.
//
// Example:
//   auto spans = std::make_shared<locus_samples::SpanRecorder>();
//   server_options.interceptors.push_back(
//       std::make_shared<locus_samples::TracingServerInterceptorFactory>(spans));
//   channel_options.interceptors.push_back(
//       std::make_shared<locus_samples::TracingClientInterceptorFactory>(spans));
//   // In a handler of that server:
//   next_stub.Call(request, locus::CallOptions::FromServerContext(*context));
#ifndef LOCUS_SAMPLES_INTERCEPTORS_TRACING_INTERCEPTOR_H_
#define LOCUS_SAMPLES_INTERCEPTORS_TRACING_INTERCEPTOR_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "locus/interceptor.h"

namespace locus_samples {

inline constexpr absl::string_view kTraceparent = "traceparent";

// A W3C trace context (version 00): 32 and 16 lower-case hex digits.
struct TraceContext {
  std::string trace_id;
  std::string span_id;
  bool sampled = true;

  // Parses a `traceparent` value; nullopt if it is not a valid version-00
  // one (all-zero ids are invalid).
  static std::optional<TraceContext> Parse(absl::string_view traceparent);
  // A new trace, or a new span of `parent`'s trace.
  static TraceContext NewTrace();
  TraceContext NewChild() const;
  std::string ToTraceparent() const;
};

struct Span {
  std::string name;  // the method
  bool server = false;
  std::string trace_id;
  std::string span_id;
  std::string parent_span_id;  // empty for a root span
  absl::StatusCode code = absl::StatusCode::kOk;
};

// Finished spans, in the order they ended. Thread-safe.
class SpanRecorder {
 public:
  void Record(Span span);
  std::vector<Span> spans() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<Span> spans_ ABSL_GUARDED_BY(mu_);
};

// A client span per call: a child of the trace in the call's `traceparent`
// (propagated from a served call), else the root of a new trace; the
// call's `traceparent` then names this span.
class TracingClientInterceptorFactory final : public locus::ClientInterceptorFactory {
 public:
  explicit TracingClientInterceptorFactory(std::shared_ptr<SpanRecorder> recorder)
      : recorder_(std::move(recorder)) {}
  std::unique_ptr<locus::ClientInterceptor> Create(const locus::ClientCallInfo& call) override;

 private:
  const std::shared_ptr<SpanRecorder> recorder_;
};

// A server span per call, a child of the client's; propagated to the
// handler's calls made with CallOptions::FromServerContext.
class TracingServerInterceptorFactory final : public locus::ServerInterceptorFactory {
 public:
  explicit TracingServerInterceptorFactory(std::shared_ptr<SpanRecorder> recorder)
      : recorder_(std::move(recorder)) {}
  std::unique_ptr<locus::ServerInterceptor> Create(const locus::ServerCallInfo& call) override;

 private:
  const std::shared_ptr<SpanRecorder> recorder_;
};

}  // namespace locus_samples

#endif  // LOCUS_SAMPLES_INTERCEPTORS_TRACING_INTERCEPTOR_H_
