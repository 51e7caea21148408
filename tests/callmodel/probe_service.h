// The Probe service of the callmodel tests (intercept_test.proto), shared by
// the tests and the peer process (callmodel_peer_main.cc).
//
// Example:
//   locus::callmodel::ProbeImpl probe;
//   server.RegisterService(&probe);
#ifndef LOCUS_TESTS_CALLMODEL_PROBE_SERVICE_H_
#define LOCUS_TESTS_CALLMODEL_PROBE_SERVICE_H_

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "intercept_test.locus.h"
#include "locus/locus.h"

namespace locus::callmodel {

class ProbeImpl final : public Probe::Service {
 public:
  // Channels to the next hops get these interceptors.
  void set_client_interceptors(std::vector<std::shared_ptr<ClientInterceptorFactory>> interceptors) {
    client_interceptors_ = std::move(interceptors);
  }

  absl::Status Unary(ServerContext* context, const ProbeRequest* request, ProbeReply* reply) override {
    calls_.fetch_add(1);
    AddMetadata(context, *request);
    reply->set_data(request->data());
    if (request->echo_metadata()) {
      for (const auto& [key, value] : context->client_metadata()) {
        Entry* entry = reply->add_metadata();
        entry->set_key(key);
        entry->set_value(value);
      }
    }
    return Outcome(*request);
  }

  absl::Status Watch(ServerContext* context, const ProbeRequest* request,
                     ServerWriter<ProbeReply>* writer) override {
    calls_.fetch_add(1);
    AddMetadata(context, *request);
    ProbeReply reply;
    for (int i = 0; i < request->count(); ++i) {
      reply.set_data(absl::StrCat(request->data(), " ", i));
      if (!writer->Write(reply)) return absl::CancelledError("the stream ended");
    }
    return Outcome(*request);
  }

  absl::Status Collect(ServerContext* context, ServerReader<ProbeRequest>* reader,
                       ProbeReply* reply) override {
    calls_.fetch_add(1);
    ProbeRequest request;
    while (reader->Read(&request)) reply->set_messages(reply->messages() + 1);
    return absl::OkStatus();
  }

  absl::Status Chat(ServerContext* context, ServerReaderWriter<ProbeReply, ProbeRequest>* stream) override {
    calls_.fetch_add(1);
    ProbeRequest request;
    ProbeReply reply;
    bool first = true;
    while (stream->Read(&request)) {
      if (first) AddMetadata(context, request);
      first = false;
      reply.set_data(request.data());
      if (!stream->Write(reply)) break;
    }
    return absl::OkStatus();
  }

  absl::Status Hop(ServerContext* context, const HopRequest* request, HopReply* reply) override {
    calls_.fetch_add(1);
    HopInfo info;
    info.set_traceparent(std::string(context->client_metadata_value("traceparent")));
    if (context->deadline() != absl::InfiniteFuture()) {
      info.set_had_deadline(true);
      info.set_deadline_left_ms(absl::ToInt64Milliseconds(context->deadline() - absl::Now()));
    }
    if (request->route().empty()) {
      waits_started_.fetch_add(1);
      const absl::Time until = absl::Now() + absl::Milliseconds(request->wait_for_cancel_ms());
      while (!context->IsCancelled() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
      info.set_saw_cancellation(context->IsCancelled());
      if (context->IsCancelled()) cancellations_seen_.fetch_add(1);
      *reply->add_hops() = info;
      return absl::OkStatus();
    }
    absl::StatusOr<std::shared_ptr<Channel>> channel = ChannelTo(request->route(0), request->transports());
    if (!channel.ok()) return channel.status();
    HopRequest next = *request;
    next.mutable_route()->erase(next.mutable_route()->begin());
    next.set_fan_out(0);
    next.set_cancel_propagated(false);
    if (request->cancel_propagated()) {
      // Cancels the calls made on this call's behalf, and nothing else.
      std::optional<Cancellation> propagated = CallOptions::FromServerContext(*context).cancellation;
      if (propagated.has_value()) propagated->Cancel();
    }
    // Each thread asks for its own options at the same time.
    const int fan_out = std::max(1, request->fan_out());
    std::vector<absl::StatusOr<HopReply>> inner(static_cast<size_t>(fan_out));
    auto call_next = [&](size_t i) {
      inner[i] = Probe::Stub(*channel).Hop(next, CallOptions::FromServerContext(*context));
    };
    if (fan_out == 1) {
      call_next(0);
    } else {
      std::atomic<int> arrived{0};
      std::vector<std::thread> threads;
      for (size_t i = 0; i < inner.size(); ++i) {
        threads.emplace_back([&, i] {
          arrived.fetch_add(1);
          while (arrived.load() < fan_out) std::this_thread::yield();
          call_next(i);
        });
      }
      for (std::thread& thread : threads) thread.join();
    }
    for (const absl::StatusOr<HopReply>& result : inner) {
      if (absl::IsCancelled(result.status())) next_cancelled_.fetch_add(1);
    }
    info.set_next_status(inner[0].status().ToString());
    if (request->cancel_propagated()) info.set_saw_cancellation(context->IsCancelled());
    *reply->add_hops() = info;
    if (request->cancel_propagated()) return absl::OkStatus();
    for (const absl::StatusOr<HopReply>& result : inner) {
      if (!result.ok()) return result.status();
    }
    for (const HopInfo& hop : inner[0]->hops()) *reply->add_hops() = hop;
    return absl::OkStatus();
  }

  absl::Status Stats(ServerContext*, const StatsRequest*, StatsReply* reply) override {
    reply->set_calls(calls_.load());
    reply->set_waits_started(waits_started_.load());
    reply->set_cancellations_seen(cancellations_seen_.load());
    reply->set_next_cancelled(next_cancelled_.load());
    return absl::OkStatus();
  }

  int64_t calls() const { return calls_.load(); }

 private:
  static void AddMetadata(ServerContext* context, const ProbeRequest& request) {
    for (const Entry& entry : request.initial()) context->AddInitialMetadata(entry.key(), entry.value());
    if (request.initial_padding_bytes() > 0) {
      context->AddInitialMetadata("padding",
                                  std::string(static_cast<size_t>(request.initial_padding_bytes()), 'p'));
    }
    for (const Entry& entry : request.trailing()) context->AddTrailingMetadata(entry.key(), entry.value());
  }

  static absl::Status Outcome(const ProbeRequest& request) {
    if (request.fail_code() == 0) return absl::OkStatus();
    absl::Status status(static_cast<absl::StatusCode>(request.fail_code()), request.fail_message());
    for (const Detail& detail : request.details()) status.SetPayload(detail.type_url(), absl::Cord(detail.value()));
    if (request.detail_padding_bytes() > 0) {
      status.SetPayload("urn:locus:test/padding",
                        absl::Cord(std::string(static_cast<size_t>(request.detail_padding_bytes()), 'd')));
    }
    return status;
  }

  absl::StatusOr<std::shared_ptr<Channel>> ChannelTo(const std::string& address, const std::string& transports) {
    absl::MutexLock lock(&mu_);
    auto it = channels_.find(address);
    if (it != channels_.end()) return it->second;
    ChannelOptions options;
    options.allowed_transports = transports;
    options.interceptors = client_interceptors_;
    absl::StatusOr<std::shared_ptr<Channel>> channel = Connect(address, options);
    if (channel.ok()) channels_[address] = *channel;
    return channel;
  }

  std::atomic<int64_t> calls_{0};
  std::atomic<int64_t> waits_started_{0};
  std::atomic<int64_t> cancellations_seen_{0};
  std::atomic<int64_t> next_cancelled_{0};
  std::vector<std::shared_ptr<ClientInterceptorFactory>> client_interceptors_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Channel>> channels_ ABSL_GUARDED_BY(mu_);
};

}  // namespace locus::callmodel

#endif  // LOCUS_TESTS_CALLMODEL_PROBE_SERVICE_H_
