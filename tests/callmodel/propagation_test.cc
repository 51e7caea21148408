// Calls made on behalf of a served call (CallOptions::FromServerContext)
// across two hops, client -> A -> B: the deadline and the cancellation
// propagate, and a W3C trace id (samples/interceptors/tracing_interceptor.h)
// crosses both hops. A and B are locus_callmodel_peer processes (three
// processes in all), or servers in this process for the in-process kind.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "locus/locus.h"
#include "probe_service.h"
#include "tests/testing/test_util.h"
#include "tracing_interceptor.h"

namespace locus::callmodel {
namespace {

using ::locus::testing::ChildProcess;
using ::locus::testing::kWatchdog;
using ::locus::testing::TempDir;
using ::locus_samples::Span;
using ::locus_samples::SpanRecorder;
using ::locus_samples::TraceContext;

struct Kind {
  const char* name;
  const char* listen;     // "%s": a temp dir; "%n": the hop's name
  const char* transport;  // where the channels must end
  bool in_process;
};

const Kind kKinds[] = {
    {"inproc", "unix:%s/%n.sock", "inproc", true},
    {"unix", "unix:%s/%n.sock", "unix", false},
    {"shm", "shm:%s/%n.sock", "shm", false},
    {"tcp", "tcp://127.0.0.1:0", "tcp", false},
    {"udp", "udp://127.0.0.1:0", "udp", false},
};

template <typename F>
bool Eventually(F done) {
  const absl::Time until = absl::Now() + kWatchdog;
  while (!done()) {
    if (absl::Now() > until) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

class Propagation : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    for (const char* name : {"a", "b"}) {
      std::string listen = GetParam().listen;
      if (size_t at = listen.find("%s"); at != std::string::npos) listen.replace(at, 2, dir_.path());
      if (size_t at = listen.find("%n"); at != std::string::npos) listen.replace(at, 2, name);
      if (GetParam().in_process) {
        auto probe = std::make_unique<ProbeImpl>();
        probe->set_client_interceptors({std::make_shared<locus_samples::TracingClientInterceptorFactory>(hop_spans_)});
        ServerOptions options;
        options.handler_threads = 4;
        options.interceptors = {std::make_shared<locus_samples::TracingServerInterceptorFactory>(hop_spans_)};
        auto server = std::make_unique<Server>(options);
        ASSERT_TRUE(server->RegisterService(probe.get()).ok());
        ASSERT_TRUE(server->AddListeningAddress(listen).ok());
        ASSERT_TRUE(server->Start().ok());
        addresses_.push_back(server->listening_addresses()[0]);
        servers_.push_back(std::move(server));
        probes_.push_back(std::move(probe));
      } else {
        auto peer = std::make_unique<ChildProcess>(LOCUS_CALLMODEL_PEER_PATH, std::vector<std::string>{listen});
        ASSERT_TRUE(peer->ready());
        ASSERT_EQ(peer->addresses().size(), 1u);
        addresses_.push_back(peer->addresses()[0]);
        peers_.push_back(std::move(peer));
      }
    }
    ChannelOptions options;
    options.allowed_transports = GetParam().transport;
    options.interceptors = {std::make_shared<locus_samples::TracingClientInterceptorFactory>(client_spans_)};
    auto channel = Connect(addresses_[0], options);
    ASSERT_TRUE(channel.ok()) << channel.status();
    ASSERT_EQ((*channel)->transport_name(), GetParam().transport);
    a_ = std::make_unique<Probe::Stub>(*channel);
    ChannelOptions plain;
    plain.allowed_transports = GetParam().transport;
    auto to_a = Connect(addresses_[0], plain);
    auto to_b = Connect(addresses_[1], plain);
    ASSERT_TRUE(to_a.ok() && to_b.ok());
    a_stats_ = std::make_unique<Probe::Stub>(*to_a);
    b_stats_ = std::make_unique<Probe::Stub>(*to_b);
  }

  void TearDown() override {
    a_.reset();
    a_stats_.reset();
    b_stats_.reset();
    for (auto& server : servers_) server->Shutdown();
  }

  // A request for A that goes on to B.
  HopRequest ThroughB(absl::Duration b_waits) const {
    HopRequest request;
    request.add_route(addresses_[1]);
    request.set_wait_for_cancel_ms(absl::ToInt64Milliseconds(b_waits));
    request.set_transports(GetParam().transport);
    return request;
  }

  StatsReply Stats(Probe::Stub& stub) {
    absl::StatusOr<StatsReply> stats = stub.Stats(StatsRequest(), CallOptions::WithTimeout(kWatchdog));
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? *stats : StatsReply();
  }

  TempDir dir_;
  std::shared_ptr<SpanRecorder> client_spans_ = std::make_shared<SpanRecorder>();
  std::shared_ptr<SpanRecorder> hop_spans_ = std::make_shared<SpanRecorder>();  // in-process hops
  std::vector<std::unique_ptr<ProbeImpl>> probes_;
  std::vector<std::unique_ptr<Server>> servers_;
  std::vector<std::unique_ptr<ChildProcess>> peers_;
  std::vector<std::string> addresses_;
  std::unique_ptr<Probe::Stub> a_;
  std::unique_ptr<Probe::Stub> a_stats_;
  std::unique_ptr<Probe::Stub> b_stats_;
};

TEST_P(Propagation, TheDeadlineAndATraceIdCrossTwoHops) {
  absl::StatusOr<HopReply> reply = a_->Hop(ThroughB(absl::ZeroDuration()), CallOptions::WithTimeout(kWatchdog));
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_EQ(reply->hops_size(), 2);
  const HopInfo& a = reply->hops(0);
  const HopInfo& b = reply->hops(1);
  // The deadline: each hop has one, no later than the one before.
  EXPECT_TRUE(a.had_deadline());
  EXPECT_TRUE(b.had_deadline());
  EXPECT_LE(a.deadline_left_ms(), absl::ToInt64Milliseconds(kWatchdog));
  EXPECT_LE(b.deadline_left_ms(), a.deadline_left_ms());
  // The trace: one id, a new parent span at each hop.
  std::vector<Span> spans = client_spans_->spans();
  ASSERT_EQ(spans.size(), 1u);
  const Span& root = spans[0];
  EXPECT_TRUE(root.parent_span_id.empty());
  std::optional<TraceContext> at_a = TraceContext::Parse(a.traceparent());
  std::optional<TraceContext> at_b = TraceContext::Parse(b.traceparent());
  ASSERT_TRUE(at_a.has_value()) << "A received traceparent \"" << a.traceparent() << "\"";
  ASSERT_TRUE(at_b.has_value()) << "B received traceparent \"" << b.traceparent() << "\"";
  EXPECT_EQ(at_a->trace_id, root.trace_id);
  EXPECT_EQ(at_b->trace_id, root.trace_id);
  EXPECT_EQ(at_a->span_id, root.span_id);  // A's caller is the client's span
  EXPECT_NE(at_b->span_id, at_a->span_id);  // B's is A's call to it
  EXPECT_NE(at_b->span_id, root.span_id);
  if (GetParam().in_process) {
    // A's server span, A's client span to B, B's server span: one trace.
    std::vector<Span> hops = hop_spans_->spans();
    ASSERT_EQ(hops.size(), 3u);
    for (const Span& span : hops) EXPECT_EQ(span.trace_id, root.trace_id) << span.name;
  }
}

TEST_P(Propagation, CancellingTheOuterCallCancelsTheInnerOne) {
  // No deadline anywhere, and B waits longer than this test watches: only
  // the propagated cancellation can end B's wait in time.
  Cancellation cancel;
  CallOptions options;
  options.cancellation = cancel;
  absl::Status outer;
  std::thread caller([&] { outer = a_->Hop(ThroughB(2 * kWatchdog), options).status(); });
  // B's handler waits: the call reached the last hop.
  const bool waiting = Eventually([&] { return Stats(*b_stats_).waits_started() == 1; });
  cancel.Cancel();
  caller.join();
  ASSERT_TRUE(waiting);
  EXPECT_EQ(outer.code(), absl::StatusCode::kCancelled) << outer;
  // B's handler saw its call cancelled, and A's call to B ended CANCELLED.
  EXPECT_TRUE(Eventually([&] { return Stats(*b_stats_).cancellations_seen() == 1; }));
  EXPECT_TRUE(Eventually([&] { return Stats(*a_stats_).next_cancelled() == 1; }));
}

// A handler that calls FromServerContext from several threads at once
// gets one cancellation for all of them: cancelling the outer call reaches
// every nested call.
TEST_P(Propagation, NestedCallsFromSeveralThreadsAreAllCancelled) {
  constexpr int kFanOut = 3;  // B serves them and a Stats call with its 4 handler threads
  Cancellation cancel;
  CallOptions options;
  options.cancellation = cancel;
  HopRequest request = ThroughB(2 * kWatchdog);
  request.set_fan_out(kFanOut);
  absl::Status outer;
  std::thread caller([&] { outer = a_->Hop(request, options).status(); });
  const bool waiting = Eventually([&] { return Stats(*b_stats_).waits_started() == kFanOut; });
  cancel.Cancel();
  caller.join();
  ASSERT_TRUE(waiting);
  EXPECT_EQ(outer.code(), absl::StatusCode::kCancelled) << outer;
  EXPECT_TRUE(Eventually([&] { return Stats(*b_stats_).cancellations_seen() == kFanOut; }));
  EXPECT_TRUE(Eventually([&] { return Stats(*a_stats_).next_cancelled() == kFanOut; }));
}

// The cancellation a handler gets is its own: cancelling it ends the calls
// it makes, not its own call nor its caller's other calls.
TEST_P(Propagation, AHandlerCancellingItsPropagationCancelsOnlyItsNestedCalls) {
  Cancellation cancel;
  CallOptions options;
  options.cancellation = cancel;
  HopRequest request = ThroughB(absl::ZeroDuration());
  request.set_cancel_propagated(true);
  absl::StatusOr<HopReply> reply = a_->Hop(request, options);
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_EQ(reply->hops_size(), 1);
  EXPECT_FALSE(reply->hops(0).saw_cancellation());
  EXPECT_NE(reply->hops(0).next_status().find("CANCELLED"), std::string::npos) << reply->hops(0).next_status();
  EXPECT_FALSE(cancel.cancelled());
  EXPECT_EQ(Stats(*b_stats_).calls(), 0);  // B was never reached
  // The caller's cancellation still serves its other calls.
  reply = a_->Hop(ThroughB(absl::ZeroDuration()), options);
  EXPECT_TRUE(reply.ok()) << reply.status();
}

// In-process calls see their server shut down as remote ones do: once the
// shutdown deadline passed, the handler is cancelled, and so are the calls
// it made on its call's behalf; the caller gets UNAVAILABLE.
TEST_P(Propagation, ShuttingDownAnInProcessServerCancelsTheCallsItsHandlersMake) {
  if (!GetParam().in_process) GTEST_SKIP() << "A runs in another process";
  absl::Status outer;
  std::thread caller([&] { outer = a_->Hop(ThroughB(2 * kWatchdog), CallOptions()).status(); });
  const bool waiting = Eventually([&] { return Stats(*b_stats_).waits_started() == 1; });
  servers_[0]->Shutdown(absl::Now());
  caller.join();
  ASSERT_TRUE(waiting);
  EXPECT_EQ(outer.code(), absl::StatusCode::kUnavailable) << outer;
  EXPECT_TRUE(Eventually([&] { return Stats(*b_stats_).cancellations_seen() == 1; }));
}

TEST_P(Propagation, TheOuterDeadlineEndsTheInnerCall) {
  absl::StatusOr<HopReply> reply = a_->Hop(ThroughB(kWatchdog), CallOptions::WithTimeout(absl::Milliseconds(500)));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded) << reply.status();
  // B learnt (its own deadline, or the cancellation from A) long before its
  // wait ran out.
  EXPECT_TRUE(Eventually([&] { return Stats(*b_stats_).cancellations_seen() == 1; }));
}

INSTANTIATE_TEST_SUITE_P(Kinds, Propagation, ::testing::ValuesIn(kKinds),
                         [](const ::testing::TestParamInfo<Kind>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace locus::callmodel
