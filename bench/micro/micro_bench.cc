// Micro-benchmarks of the pieces on a Locus call's path (Google Benchmark):
//   BM_FrameEncode        header + meta + payload appended to a send buffer
//   BM_FrameValidate      ValidateFrameHeader on a received header
//   BM_FrameDecode        internal::FrameDecoder cutting frames out of a stream
//                         (whole frames, and the stream fed in 1500-byte reads)
//   BM_CallHeaderEncode/Parse   wire.CallHeader (the REQUEST meta)
//   BM_StubDispatch       generated stub -> in-memory fake Channel -> service
//                         method table -> handler (serialized path)
//   BM_RingPushPop        the raw shm baseline's SPSC ring, one thread
//   BM_RingStream         same ring, producer here, consumer on another thread
//   BM_SystemCall         the cheapest system call (getppid): what the host
//                         charges per kernel entry, the unit of every socket
//                         transport's cost (~0.1 us on bare metal, ~1 us in
//                         some VMs; docs/performance.md)
//
// Run: build-bench/bin/locus_micro_bench [--benchmark_filter=Ring]
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "benchmark/benchmark.h"
#include "harness/spsc_ring.h"
#include "internal/stream_call.h"
#include "locus/codegen_support.h"
#include "locus/frame.h"
#include "locus/wire.pb.h"
#include "locus_bench.locus.h"
#include "transports/common/frame_decoder.h"
#include "transports/shm/shm_layout.h"
#include "transports/shm/shm_ring.h"

namespace {

using locus::FrameHeader;
using locus::FrameType;

locus::wire::CallHeader MakeCallHeader() {
  locus::wire::CallHeader h;
  h.set_method("/locus.bench.Bench/Echo");
  h.set_timeout_ns(200000000);
  return h;
}

void AppendFrame(std::string* out, uint64_t call_id, const std::string& meta,
                 const std::string& payload) {
  FrameHeader h = FrameHeader::Make(FrameType::kRequest, locus::kFlagHasMessage, call_id);
  h.meta_length = static_cast<uint32_t>(meta.size());
  h.payload_length = static_cast<uint32_t>(payload.size());
  out->append(reinterpret_cast<const char*>(&h), sizeof h);
  out->append(meta);
  out->append(payload);
}

void BM_FrameEncode(benchmark::State& state) {
  std::string meta = MakeCallHeader().SerializeAsString();
  std::string payload(state.range(0), 'x');
  std::string buf;
  buf.reserve(1 << 21);
  uint64_t id = 1;
  for (auto _ : state) {
    buf.clear();
    AppendFrame(&buf, id += 2, meta, payload);
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(state.iterations() * (sizeof(FrameHeader) + meta.size() + payload.size()));
}
BENCHMARK(BM_FrameEncode)->Arg(0)->Arg(64)->Arg(4096)->Arg(65536);

void BM_FrameValidate(benchmark::State& state) {
  FrameHeader h = FrameHeader::Make(FrameType::kRequest, locus::kFlagHasMessage, 7);
  h.meta_length = 40;
  h.payload_length = 64;
  for (auto _ : state) {
    benchmark::DoNotOptimize(h);
    absl::Status s = locus::ValidateFrameHeader(h, locus::kDefaultMaxMetaSize, locus::kDefaultMaxMessageSize);
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_FrameValidate);

class CountingSink final : public locus::internal::FrameDecoderSink {
 public:
  void OnFrame(locus::Frame& frame) override {
    ++frames;
    bytes += frame.payload_bytes().size();
  }
  void OnOversizeFrame(const FrameHeader&) override {}
  uint64_t frames = 0, bytes = 0;
};

// range(0): payload size; range(1): read size (0 = the whole batch at once).
void BM_FrameDecode(benchmark::State& state) {
  const int kFrames = 64;
  std::string meta = MakeCallHeader().SerializeAsString();
  std::string payload(state.range(0), 'x');
  std::string stream;
  for (int i = 0; i < kFrames; ++i) AppendFrame(&stream, 2 * i + 1, meta, payload);
  size_t chunk = state.range(1) == 0 ? stream.size() : static_cast<size_t>(state.range(1));
  CountingSink sink;
  for (auto _ : state) {
    locus::internal::FrameDecoder decoder(locus::kDefaultMaxMetaSize, locus::kDefaultMaxMessageSize);
    for (size_t off = 0; off < stream.size(); off += chunk) {
      absl::Status s = decoder.Consume(absl::string_view(stream).substr(off, chunk), sink);
      if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    }
  }
  state.SetItemsProcessed(state.iterations() * kFrames);
  state.SetBytesProcessed(state.iterations() * stream.size());
}
BENCHMARK(BM_FrameDecode)->Args({0, 0})->Args({64, 0})->Args({4096, 0})->Args({64, 1500})->Args({4096, 1500})->Args({65536, 65536});

void BM_CallHeaderEncode(benchmark::State& state) {
  locus::wire::CallHeader h = MakeCallHeader();
  if (state.range(0) > 0) {
    for (int i = 0; i < state.range(0); ++i) {
      auto* e = h.add_metadata();
      e->set_key("key-" + std::to_string(i));
      e->set_value("value-" + std::to_string(i));
    }
  }
  std::string out;
  for (auto _ : state) {
    out.clear();
    h.SerializeToString(&out);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_CallHeaderEncode)->Arg(0)->Arg(4);

void BM_CallHeaderBuildAndEncode(benchmark::State& state) {
  std::string out;
  for (auto _ : state) {
    locus::wire::CallHeader h;
    h.set_method("/locus.bench.Bench/Echo");
    h.set_timeout_ns(200000000);
    out.clear();
    h.SerializeToString(&out);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_CallHeaderBuildAndEncode);

void BM_CallHeaderParse(benchmark::State& state) {
  locus::wire::CallHeader h = MakeCallHeader();
  for (int i = 0; i < state.range(0); ++i) {
    auto* e = h.add_metadata();
    e->set_key("key-" + std::to_string(i));
    e->set_value("value-" + std::to_string(i));
  }
  std::string bytes = h.SerializeAsString();
  locus::wire::CallHeader parsed;
  for (auto _ : state) {
    bool ok = parsed.ParseFromString(bytes);
    benchmark::DoNotOptimize(ok);
  }
}
BENCHMARK(BM_CallHeaderParse)->Arg(0)->Arg(4);

// ---- Stub dispatch over an in-memory fake Channel --------------------------

class EchoService final : public locus::bench::Bench::Service {
 public:
  absl::Status Echo(locus::ServerContext*, const locus::bench::EchoMsg* request,
                    locus::bench::EchoMsg* reply) override {
    reply->set_data(request->data());
    return absl::OkStatus();
  }
};

// Serializes the reply into a string, as the runtime does into a transport.
struct SerializingSink final : locus::ReplySink {
  explicit SerializingSink(std::string* out) : out(out) {}
  void Finish(const absl::Status& s, const google::protobuf::MessageLite* reply) override {
    status = s;
    out->clear();
    if (reply != nullptr) reply->SerializeToString(out);
  }
  std::string* out;
  absl::Status status;
};

// Serves calls in-process through the service's method table and the
// serialized path, like a server after the transport (cf. the fake channel
// in codegen/generated_code_test.cc).
class FakeChannel final : public locus::Channel {
 public:
  explicit FakeChannel(locus::Service* service) : service_(service) {}

  absl::Status CallUnary(const locus::RpcMethod& method, const google::protobuf::MessageLite& request,
                         google::protobuf::MessageLite* response,
                         const locus::CallOptions& options) override {
    for (const auto& entry : service_->methods()) {
      if (entry.method != &method && strcmp(entry.method->full_name, method.full_name) != 0) continue;
      locus::ServerContext context(method.full_name, options.deadline, options.metadata, &peer_, nullptr);
      request_bytes_.clear();
      request.SerializeToString(&request_bytes_);
      SerializingSink sink(&response_bytes_);
      entry.handler->CallSerialized(&context, request_bytes_, sink);
      if (!sink.status.ok()) return sink.status;
      if (!response->ParseFromString(response_bytes_)) return absl::InternalError("reply does not parse");
      return absl::OkStatus();
    }
    return absl::UnimplementedError("no such method");
  }
  void StartUnary(const locus::RpcMethod& method, const google::protobuf::MessageLite& request,
                  google::protobuf::MessageLite* response, const locus::CallOptions& options,
                  absl::AnyInvocable<void(absl::Status) &&> done) override {
    std::move(done)(CallUnary(method, request, response, options));
  }
  // Stub dispatch is measured for unary calls only.
  std::unique_ptr<locus::ClientCallStream> OpenStream(const locus::RpcMethod&,
                                                      const google::protobuf::MessageLite*,
                                                      google::protobuf::MessageLite*,
                                                      const locus::CallOptions&) override {
    return locus::internal::MakeFailedClientStream(absl::UnimplementedError("fake channel"));
  }
  std::string transport_name() const override { return "fake"; }
  const std::string& target() const override { return target_; }

 private:
  locus::Service* service_;
  locus::PeerInfo peer_;
  std::string target_ = "fake:";
  std::string request_bytes_, response_bytes_;
};

void BM_StubDispatchSync(benchmark::State& state) {
  EchoService service;
  auto channel = std::make_shared<FakeChannel>(&service);
  locus::bench::Bench::Stub stub(channel);
  locus::bench::EchoMsg request, reply;
  request.set_data(std::string(state.range(0), 'x'));
  for (auto _ : state) {
    absl::Status s = stub.Echo(request, &reply);
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
  }
}
BENCHMARK(BM_StubDispatchSync)->Arg(64)->Arg(4096);

void BM_StubDispatchCallback(benchmark::State& state) {
  EchoService service;
  auto channel = std::make_shared<FakeChannel>(&service);
  locus::bench::Bench::Stub stub(channel);
  locus::bench::EchoMsg request, reply;
  request.set_data(std::string(state.range(0), 'x'));
  int done = 0;
  for (auto _ : state) {
    stub.AsyncEcho(request, &reply, {}, [&done](absl::Status) { ++done; });
  }
  benchmark::DoNotOptimize(done);
}
BENCHMARK(BM_StubDispatchCallback)->Arg(64);

void BM_StubDispatchFuture(benchmark::State& state) {
  EchoService service;
  auto channel = std::make_shared<FakeChannel>(&service);
  locus::bench::Bench::Stub stub(channel);
  locus::bench::EchoMsg request;
  request.set_data(std::string(state.range(0), 'x'));
  for (auto _ : state) {
    auto reply = stub.AsyncEcho(request).Get();
    benchmark::DoNotOptimize(reply);
  }
}
BENCHMARK(BM_StubDispatchFuture)->Arg(64);

// ---- SPSC ring -------------------------------------------------------------

struct RingMemory {
  explicit RingMemory(size_t capacity) : data(capacity), control(new locus_bench::RingControl()) {
    control->head.store(0);
    control->tail.store(0);
    control->seq.store(0);
    control->sleeping.store(0);
  }
  ~RingMemory() { delete control; }
  std::vector<uint8_t> data;
  locus_bench::RingControl* control;
};

void BM_RingPushPop(benchmark::State& state) {
  RingMemory mem(1 << 20);
  locus_bench::SpscRing ring(mem.control, mem.data.data(), mem.data.size());
  std::vector<char> msg(state.range(0), 'x'), out(state.range(0) + 8);
  for (auto _ : state) {
    ring.TryPush(msg.data(), static_cast<uint32_t>(msg.size()));
    benchmark::DoNotOptimize(ring.TryPop(out.data(), out.size()));
  }
  state.SetBytesProcessed(state.iterations() * msg.size());
}
BENCHMARK(BM_RingPushPop)->Arg(8)->Arg(64)->Arg(4096);

// Producer on the benchmark thread, consumer draining on another thread.
void BM_RingStream(benchmark::State& state) {
  RingMemory mem(1 << 20);
  locus_bench::SpscRing producer(mem.control, mem.data.data(), mem.data.size());
  locus_bench::SpscRing consumer(mem.control, mem.data.data(), mem.data.size());
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> received{0};
  std::thread reader([&] {
    std::vector<char> out(state.range(0) + 8);
    uint64_t n = 0;
    while (!stop.load(std::memory_order_relaxed) || !consumer.Empty()) {
      if (consumer.TryPop(out.data(), out.size()) >= 0) {
        ++n;
      } else {
        locus_bench::CpuRelax();
      }
    }
    received.store(n);
  });
  std::vector<char> msg(state.range(0), 'x');
  for (auto _ : state) {
    while (!producer.TryPush(msg.data(), static_cast<uint32_t>(msg.size()))) locus_bench::CpuRelax();
  }
  stop.store(true);
  reader.join();
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * msg.size());
  state.counters["received"] = static_cast<double>(received.load());
}
BENCHMARK(BM_RingStream)->Arg(64)->Arg(4096)->UseRealTime();

// ---- Locus's shm ring (transports/shm/shm_ring.h): sealed records --------

struct ShmRingMemory {
  static constexpr uint64_t kKey = locus::internal::kShmSealKeyMark | 0xbe7c;
  explicit ShmRingMemory(size_t capacity) : data(capacity) {}
  std::vector<char> data;
  locus::internal::ShmRingControl control{};
  std::atomic<uint32_t> doorbell{0};
  locus::internal::ShmRing Side() { return {&control, data.data(), data.size(), &doorbell, kKey}; }
};

// One record written (FreeSpace, Append, Publish) and read (Readable,
// Consume, Release) on one thread: the ring's own instructions per message.
void BM_ShmRingPushPop(benchmark::State& state) {
  ShmRingMemory mem(1 << 20);
  locus::internal::ShmRing producer = mem.Side();
  locus::internal::ShmRing consumer = mem.Side();
  std::vector<char> msg(state.range(0), 'x');
  for (auto _ : state) {
    uint64_t free = 0;
    (void)producer.FreeSpace(&free, msg.size());
    producer.Write(msg.data(), msg.size());
    absl::string_view a, b;
    (void)consumer.Readable(&a, &b);
    benchmark::DoNotOptimize(a.data());
    consumer.Consume(a.size() + b.size());
    consumer.Release();
  }
  state.SetBytesProcessed(state.iterations() * msg.size());
}
BENCHMARK(BM_ShmRingPushPop)->Arg(8)->Arg(64)->Arg(4096);

// Producer on the benchmark thread, a consumer draining records on another
// (batches of what is sealed, released once per batch, as the transport's
// reader does).
void BM_ShmRingStream(benchmark::State& state) {
  ShmRingMemory mem(1 << 20);
  locus::internal::ShmRing producer = mem.Side();
  locus::internal::ShmRing consumer = mem.Side();
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> received{0};
  std::thread reader([&] {
    uint64_t n = 0;
    for (;;) {
      const bool stopping = stop.load(std::memory_order_acquire);
      bool any = false;
      absl::string_view a, b;
      while (consumer.Readable(&a, &b).ok() && !a.empty()) {
        benchmark::DoNotOptimize(a.data());
        consumer.Consume(a.size() + b.size());
        any = true;
        ++n;
      }
      if (any) consumer.Release();
      if (!any && stopping) break;
      if (!any) locus_bench::CpuRelax();
    }
    received.store(n);
  });
  std::vector<char> msg(state.range(0), 'x');
  for (auto _ : state) {
    uint64_t free = 0;
    while (producer.FreeSpace(&free, msg.size()).ok() && free < msg.size()) locus_bench::CpuRelax();
    producer.Write(msg.data(), msg.size());
  }
  stop.store(true, std::memory_order_release);
  reader.join();
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * msg.size());
  state.counters["received"] = static_cast<double>(received.load());
}
BENCHMARK(BM_ShmRingStream)->Arg(64)->Arg(4096)->UseRealTime();

void BM_SystemCall(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(syscall(SYS_getppid));
}
BENCHMARK(BM_SystemCall);

}  // namespace

BENCHMARK_MAIN();
