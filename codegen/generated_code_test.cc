// Exercises code that locusc generated at build time from codegen/testdata/
// (see locus_generate() in codegen/CMakeLists.txt): stubs and services talk
// through a fake Channel that dispatches on the service's method table.
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "acme/common/types.locus.h"
#include "acme/storage/v1/storage.locus.h"
#include "codegen/locus_generator.h"
#include "commented.locus.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "keywords.locus.h"
#include "nopackage.locus.h"
#include "options.locus.h"
#include "wkt.locus.h"

namespace {

using ::acme::storage::v1::Blob;
using ::acme::storage::v1::BlobStore;
using ::acme::storage::v1::GetBlobRequest;

// A Channel that serves calls in-process from one Service, through its
// method table and the serialized path (like a real server would).
class FakeChannel final : public ::locus::Channel {
 public:
  explicit FakeChannel(::locus::Service* service) : service_(service) {}

  absl::Status CallUnary(const ::locus::RpcMethod& method,
                         const google::protobuf::MessageLite& request,
                         google::protobuf::MessageLite* response,
                         const ::locus::CallOptions& options) override {
    ++calls_;
    last_method_ = &method;
    last_deadline_ = options.deadline;
    for (const auto& entry : service_->methods()) {
      if (std::string(entry.method->full_name) != method.full_name) continue;
      ::locus::ServerContext context(method.full_name, options.deadline, options.metadata, &peer_,
                                     nullptr);
      std::string request_bytes = request.SerializeAsString();
      struct Sink final : ::locus::ReplySink {
        void Finish(const absl::Status& s, const google::protobuf::MessageLite* reply) override {
          ++finishes;
          status = s;
          if (reply != nullptr) bytes = reply->SerializeAsString();
        }
        int finishes = 0;
        absl::Status status;
        std::string bytes;
      } sink;
      entry.handler->CallSerialized(&context, request_bytes, sink);
      if (sink.finishes != 1) return absl::InternalError("Finish not called exactly once");
      if (!sink.status.ok()) return sink.status;
      if (!response->ParseFromString(sink.bytes)) {
        return absl::InternalError("reply does not parse");
      }
      return absl::OkStatus();
    }
    return absl::UnimplementedError(absl::StrCat("no method ", method.full_name));
  }

  void StartUnary(const ::locus::RpcMethod& method, const google::protobuf::MessageLite& request,
                  google::protobuf::MessageLite* response, const ::locus::CallOptions& options,
                  absl::AnyInvocable<void(absl::Status) &&> done) override {
    // The request may be destroyed when we return: serve it now, but hold
    // the completion back until RunPending() when deferring.
    absl::Status status = CallUnary(method, request, response, options);
    auto complete = [status = std::move(status), done = std::move(done)]() mutable {
      std::move(done)(std::move(status));
    };
    if (defer_) {
      pending_.push_back(std::move(complete));
    } else {
      complete();
    }
  }

  // Records how the stub opened the stream; the stream itself fails with
  // UNIMPLEMENTED (streams end to end are tested in tests/conformance).
  std::unique_ptr<::locus::ClientCallStream> OpenStream(
      const ::locus::RpcMethod& method, const google::protobuf::MessageLite* request,
      google::protobuf::MessageLite* response, const ::locus::CallOptions& options) override {
    ++calls_;
    last_method_ = &method;
    last_deadline_ = options.deadline;
    last_stream_request_ = request;
    last_stream_response_ = response;
    class Unimplemented final : public ::locus::ClientCallStream {
     public:
      bool Write(const google::protobuf::MessageLite&) override { return false; }
      bool WritesDone() override { return false; }
      bool Read(google::protobuf::MessageLite*) override { return false; }
      absl::Status Finish() override { return absl::UnimplementedError("fake stream"); }
      void Cancel() override {}
    };
    return std::make_unique<Unimplemented>();
  }

  std::string transport_name() const override { return "fake"; }
  const std::string& target() const override { return target_; }

  void set_defer(bool defer) { defer_ = defer; }
  void RunPending() {
    while (!pending_.empty()) {
      auto next = std::move(pending_.front());
      pending_.pop_front();
      next();
    }
  }
  int calls() const { return calls_; }
  const ::locus::RpcMethod* last_method() const { return last_method_; }
  absl::Time last_deadline() const { return last_deadline_; }
  const google::protobuf::MessageLite* last_stream_request() const { return last_stream_request_; }
  google::protobuf::MessageLite* last_stream_response() const { return last_stream_response_; }

 private:
  ::locus::Service* service_;
  ::locus::PeerInfo peer_;
  std::string target_ = "fake:";
  bool defer_ = false;
  std::deque<absl::AnyInvocable<void()>> pending_;
  int calls_ = 0;
  const ::locus::RpcMethod* last_method_ = nullptr;
  absl::Time last_deadline_;
  const google::protobuf::MessageLite* last_stream_request_ = nullptr;
  google::protobuf::MessageLite* last_stream_response_ = nullptr;
};

const ::acme::storage::v1::Blob& blob_for_direct() {
  static const auto* blob = new ::acme::storage::v1::Blob();
  return *blob;
}

class BlobStoreImpl final : public BlobStore::Service {
 public:
  absl::Status GetBlob(::locus::ServerContext* context, const GetBlobRequest* request,
                       Blob* response) override {
    if (request->id().name().empty()) return absl::NotFoundError("no name");
    *response->mutable_id() = request->id();
    response->set_data("data of " + request->id().name());
    response->mutable_metadata()->set_content_type("text/plain");
    seen_method_ = std::string(context->method());
    return absl::OkStatus();
  }
  // PutBlob, ListBlobs, Describe: not overridden.

  std::string seen_method_;
};

GetBlobRequest Request(const std::string& name) {
  GetBlobRequest request;
  request.mutable_id()->set_project("p");
  request.mutable_id()->set_name(name);
  return request;
}

TEST(GeneratedCode, SyncCallRoundTrips) {
  BlobStoreImpl service;
  auto channel = std::make_shared<FakeChannel>(&service);
  BlobStore::Stub stub(channel);

  absl::StatusOr<Blob> blob = stub.GetBlob(Request("cat.jpg"));
  ASSERT_TRUE(blob.ok()) << blob.status();
  EXPECT_EQ(blob->data(), "data of cat.jpg");
  EXPECT_EQ(blob->id().project(), "p");
  EXPECT_EQ(blob->metadata().content_type(), "text/plain");
  EXPECT_EQ(service.seen_method_, "/acme.storage.v1.BlobStore/GetBlob");
  EXPECT_EQ(channel->last_method(), &BlobStore::kMethodGetBlob);

  Blob out;
  EXPECT_TRUE(stub.GetBlob(Request("dog.png"), &out).ok());
  EXPECT_EQ(out.data(), "data of dog.png");

  // Errors from the handler reach the caller.
  absl::StatusOr<Blob> missing = stub.GetBlob(Request(""));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(stub.channel().get(), channel.get());
}

TEST(GeneratedCode, NewStubWorks) {
  BlobStoreImpl service;
  std::unique_ptr<BlobStore::Stub> stub = BlobStore::NewStub(std::make_shared<FakeChannel>(&service));
  ASSERT_NE(stub, nullptr);
  EXPECT_TRUE(stub->GetBlob(Request("x")).ok());
}

TEST(GeneratedCode, UnimplementedMethod) {
  BlobStoreImpl service;
  BlobStore::Stub stub(std::make_shared<FakeChannel>(&service));
  absl::StatusOr<::acme::common::ResourceId> id = stub.PutBlob(Blob());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(id.status().message().find("/acme.storage.v1.BlobStore/PutBlob"), std::string::npos)
      << id.status();

  // A bare generated service answers UNIMPLEMENTED for everything.
  ::acme::storage::v1::BlobAdmin::Service admin;
  ::acme::storage::v1::BlobAdmin::Stub admin_stub(std::make_shared<FakeChannel>(&admin));
  EXPECT_EQ(admin_stub.Purge(::acme::common::ResourceId()).status().code(),
            absl::StatusCode::kUnimplemented);
}

TEST(GeneratedCode, MethodTable) {
  EXPECT_STREQ(BlobStore::kServiceName, "acme.storage.v1.BlobStore");
  static_assert(BlobStore::kMethodCount == 7, "seven methods");
  const char* expected[] = {"/acme.storage.v1.BlobStore/GetBlob",
                            "/acme.storage.v1.BlobStore/PutBlob",
                            "/acme.storage.v1.BlobStore/ListBlobs",
                            "/acme.storage.v1.BlobStore/Describe",
                            "/acme.storage.v1.BlobStore/WatchBlobs",
                            "/acme.storage.v1.BlobStore/UploadBlob",
                            "/acme.storage.v1.BlobStore/SyncBlobs"};
  const ::locus::RpcKind kinds[] = {
      ::locus::RpcKind::kUnary,           ::locus::RpcKind::kUnary,
      ::locus::RpcKind::kUnary,           ::locus::RpcKind::kUnary,
      ::locus::RpcKind::kServerStreaming, ::locus::RpcKind::kClientStreaming,
      ::locus::RpcKind::kBidiStreaming};
  for (int i = 0; i < BlobStore::kMethodCount; ++i) {
    EXPECT_STREQ(BlobStore::kMethods[i]->full_name, expected[i]);
    EXPECT_EQ(BlobStore::kMethods[i]->kind, kinds[i]) << expected[i];
    EXPECT_FALSE(BlobStore::kMethods[i]->oneway);
  }
  EXPECT_EQ(BlobStore::kMethods[0], &BlobStore::kMethodGetBlob);

  // The Service registers the same table, under the service name.
  BlobStoreImpl service;
  EXPECT_EQ(service.name(), "acme.storage.v1.BlobStore");
  ASSERT_EQ(service.methods().size(), 7u);
  for (int i = 0; i < BlobStore::kMethodCount; ++i) {
    EXPECT_EQ(service.methods()[i].method, BlobStore::kMethods[i]);
    EXPECT_NE(service.methods()[i].handler, nullptr);
  }

  // Locus options: wire_name and oneway.
  EXPECT_STREQ(::opts::Logger::kServiceName, "logging.v1.Logger");
  EXPECT_STREQ(::opts::Logger::kMethodWrite.full_name, "/logging.v1.Logger/Write");
  EXPECT_TRUE(::opts::Logger::kMethodWrite.oneway);
  EXPECT_FALSE(::opts::Logger::kMethodFlush.oneway);
  ::opts::Logger::Service logger;
  EXPECT_EQ(logger.name(), "logging.v1.Logger");

  // (locus.retry): the method table points at the policy; others have none.
  EXPECT_EQ(::opts::Search::kMethodFind.retry_policy, nullptr);
  EXPECT_EQ(::opts::Logger::kMethodWrite.retry_policy, nullptr);
  const ::locus::RetryPolicy* again = ::opts::Search::kMethodFindAgain.retry_policy;
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->max_attempts, 3);
  EXPECT_EQ(again->initial_backoff, absl::Milliseconds(100));
  EXPECT_EQ(again->max_backoff, absl::Seconds(1));
  EXPECT_DOUBLE_EQ(again->backoff_multiplier, 1.6);
  EXPECT_TRUE(again->Retries(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(again->Retries(absl::StatusCode::kResourceExhausted));
  EXPECT_FALSE(again->Retries(absl::StatusCode::kInternal));
  EXPECT_FALSE(again->Retries(absl::StatusCode::kOk));
  const ::locus::RetryPolicy* watch = ::opts::Search::kMethodWatch.retry_policy;
  ASSERT_NE(watch, nullptr);
  EXPECT_EQ(watch->attempts(), 5);
  EXPECT_EQ(::opts::Search::kMethodWatch.kind, ::locus::RpcKind::kServerStreaming);

  // No package; no methods.
  EXPECT_STREQ(::Oracle::kServiceName, "Oracle");
  EXPECT_STREQ(::Oracle::kMethodAsk.full_name, "/Oracle/Ask");
  static_assert(::docs::v2::Nothing::kMethodCount == 0, "no methods");
  EXPECT_EQ(::docs::v2::Nothing::kMethods[0], nullptr);
  ::docs::v2::Nothing::Service nothing;
  EXPECT_TRUE(nothing.methods().empty());
}

// Each streaming stub opens its stream with the request (server streaming)
// or the response (client streaming) it was given, and the call options.
TEST(GeneratedCode, StreamingStubsOpenStreams) {
  BlobStoreImpl service;
  auto channel = std::make_shared<FakeChannel>(&service);
  BlobStore::Stub stub(channel);
  const absl::Time deadline = absl::Now() + absl::Seconds(7);

  ::acme::storage::v1::ListBlobsRequest request;
  ::locus::ClientReader<::acme::storage::v1::Blob> watch =
      stub.WatchBlobs(request, ::locus::CallOptions::WithDeadline(deadline));
  EXPECT_EQ(channel->last_method(), &BlobStore::kMethodWatchBlobs);
  EXPECT_EQ(channel->last_stream_request(), &request);
  EXPECT_EQ(channel->last_stream_response(), nullptr);
  EXPECT_EQ(channel->last_deadline(), deadline);
  ::acme::storage::v1::Blob blob;
  EXPECT_FALSE(watch.Read(&blob));
  EXPECT_EQ(watch.Finish().code(), absl::StatusCode::kUnimplemented);

  ::acme::common::ResourceId id;
  ::locus::ClientWriter<::acme::storage::v1::Blob> upload = stub.UploadBlob(&id);
  EXPECT_EQ(channel->last_method(), &BlobStore::kMethodUploadBlob);
  EXPECT_EQ(channel->last_stream_request(), nullptr);
  EXPECT_EQ(channel->last_stream_response(), &id);
  EXPECT_EQ(channel->last_deadline(), absl::InfiniteFuture());

  ::locus::ClientReaderWriter<::acme::storage::v1::Blob, ::acme::storage::v1::Blob_Metadata> sync =
      stub.SyncBlobs();
  EXPECT_EQ(channel->last_method(), &BlobStore::kMethodSyncBlobs);
  EXPECT_EQ(channel->last_stream_request(), nullptr);
  EXPECT_EQ(channel->last_stream_response(), nullptr);
}

// A stream whose client sent nothing and is gone.
class EmptyStream final : public ::locus::ServerCallStream {
 public:
  bool Read(google::protobuf::MessageLite*) override { return false; }
  bool Write(const google::protobuf::MessageLite&) override { return false; }
};

TEST(GeneratedCode, UnimplementedStreamingMethods) {
  BlobStoreImpl service;  // overrides no streaming method
  ::locus::PeerInfo peer;
  for (const auto& entry : service.methods()) {
    if (entry.method->kind == ::locus::RpcKind::kUnary) continue;
    ::locus::ServerContext context(entry.method->full_name, absl::InfiniteFuture(), {}, &peer,
                                   nullptr);
    struct Sink final : ::locus::ReplySink {
      void Finish(const absl::Status& s, const google::protobuf::MessageLite* reply) override {
        ++finishes;
        status = s;
        had_reply = reply != nullptr;
      }
      int finishes = 0;
      absl::Status status;
      bool had_reply = false;
    } sink;
    EmptyStream stream;
    entry.handler->CallStream(&context, stream, sink);
    EXPECT_EQ(sink.finishes, 1) << entry.method->full_name;
    EXPECT_EQ(sink.status.code(), entry.method->kind == ::locus::RpcKind::kServerStreaming
                                      ? absl::StatusCode::kInvalidArgument  // no request to read
                                      : absl::StatusCode::kUnimplemented)
        << entry.method->full_name << ": " << sink.status;
    EXPECT_FALSE(sink.had_reply);
    // The unary entry points of a streaming handler refuse to run.
    EXPECT_EQ(entry.handler->CallDirect(&context, blob_for_direct(), nullptr).code(),
              absl::StatusCode::kInternal);
  }
}

TEST(GeneratedCode, AsyncViaFuture) {
  BlobStoreImpl service;
  auto channel = std::make_shared<FakeChannel>(&service);
  channel->set_defer(true);
  BlobStore::Stub stub(channel);

  ::locus::Future<Blob> future = stub.AsyncGetBlob(Request("later"));
  ASSERT_TRUE(future.valid());
  EXPECT_FALSE(future.ready());
  channel->RunPending();
  EXPECT_TRUE(future.ready());
  absl::StatusOr<Blob> blob = future.Get();
  ASSERT_TRUE(blob.ok()) << blob.status();
  EXPECT_EQ(blob->data(), "data of later");

  ::locus::Future<::acme::common::ResourceId> failing = stub.AsyncPutBlob(Blob());
  channel->RunPending();
  EXPECT_EQ(failing.Get().status().code(), absl::StatusCode::kUnimplemented);
}

TEST(GeneratedCode, AsyncViaCallback) {
  BlobStoreImpl service;
  auto channel = std::make_shared<FakeChannel>(&service);
  channel->set_defer(true);
  BlobStore::Stub stub(channel);

  Blob response;
  bool called = false;
  absl::Status result = absl::UnknownError("not called");
  stub.AsyncGetBlob(Request("cb"), &response, {}, [&](absl::Status status) {
    called = true;
    result = std::move(status);
  });
  EXPECT_FALSE(called);
  channel->RunPending();
  EXPECT_TRUE(called);
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_EQ(response.data(), "data of cb");
}

class SearchImpl final : public ::opts::Search::Service {
 public:
  absl::Status Find(::locus::ServerContext* context, const ::opts::Query* request,
                    ::opts::Result* response) override {
    response->add_rows(request->text());
    return absl::OkStatus();
  }
  absl::Status FindSlowly(::locus::ServerContext* context, const ::opts::Query* request,
                          ::opts::Result* response) override {
    return absl::OkStatus();
  }
};

TEST(GeneratedCode, DefaultTimeoutApplied) {
  SearchImpl service;
  auto channel = std::make_shared<FakeChannel>(&service);
  ::opts::Search::Stub stub(channel);
  ::opts::Query query;
  query.set_text("q");

  // No deadline set: (locus.default_timeout_ms) = 250 applies.
  absl::Time before = absl::Now();
  absl::StatusOr<::opts::Result> result = stub.Find(query);
  absl::Time after = absl::Now();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->rows(0), "q");
  EXPECT_GE(channel->last_deadline(), before + absl::Milliseconds(250));
  EXPECT_LE(channel->last_deadline(), after + absl::Milliseconds(250));

  // All four variants apply it.
  ::opts::Result out;
  EXPECT_TRUE(stub.Find(query, &out).ok());
  EXPECT_LT(channel->last_deadline(), absl::InfiniteFuture());
  EXPECT_TRUE(stub.AsyncFind(query).Get().ok());
  EXPECT_LT(channel->last_deadline(), absl::InfiniteFuture());
  stub.AsyncFind(query, &out, {}, [](absl::Status) {});
  EXPECT_LT(channel->last_deadline(), absl::InfiniteFuture());

  // An explicit deadline wins.
  absl::Time deadline = absl::Now() + absl::Hours(1);
  EXPECT_TRUE(stub.Find(query, ::locus::CallOptions::WithDeadline(deadline)).ok());
  EXPECT_EQ(channel->last_deadline(), deadline);

  // Methods without the option keep an infinite deadline.
  EXPECT_TRUE(stub.FindSlowly(query).ok());
  EXPECT_EQ(channel->last_deadline(), absl::InfiniteFuture());
}

// Keyword and collision mangling (see README.md): these only compile if the
// generated names are as documented.
class KeywordImpl final : public ::kw::class_::Service {
 public:
  absl::Status delete_(::locus::ServerContext*, const ::kw::default_* request,
                       ::kw::Reply* response) override {
    response->set_text("deleted " + std::to_string(request->new_()));
    return absl::OkStatus();
  }
};

class PlainImpl final : public ::kw::Plain::Service {
 public:
  absl::Status channel_2(::locus::ServerContext*, const ::kw::default_*,
                         ::kw::Reply* response) override {
    response->set_text("channel");
    return absl::OkStatus();
  }
  absl::Status AsyncPing_(::locus::ServerContext*, const ::kw::default_*,
                          ::kw::Reply* response) override {
    response->set_text("AsyncPing");
    return absl::OkStatus();
  }
  absl::Status delete_2(::locus::ServerContext*, const ::kw::default_*,
                        ::kw::Reply* response) override {
    response->set_text("delete");
    return absl::OkStatus();
  }
  absl::Status delete_(::locus::ServerContext*, const ::kw::default_*,
                       ::kw::Reply* response) override {
    response->set_text("delete_");
    return absl::OkStatus();
  }
};

TEST(GeneratedCode, KeywordNames) {
  KeywordImpl service;
  ::kw::class_::Stub stub(std::make_shared<FakeChannel>(&service));
  ::kw::default_ request;
  request.set_new_(7);
  absl::StatusOr<::kw::Reply> reply = stub.delete_(request);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->text(), "deleted 7");
  EXPECT_STREQ(::kw::class_::kServiceName, "kw.class");
  // Wire names keep the proto spelling.
  EXPECT_STREQ(::kw::class_::kMethoddelete_.full_name, "/kw.class/delete");
  EXPECT_EQ(stub.new_(request).status().code(), absl::StatusCode::kUnimplemented);
}

TEST(GeneratedCode, CollidingNames) {
  PlainImpl service;
  auto channel = std::make_shared<FakeChannel>(&service);
  ::kw::Plain::Stub stub(channel);
  ::kw::default_ request;
  EXPECT_EQ(stub.channel_2(request)->text(), "channel");
  EXPECT_EQ(stub.channel(), channel);  // the accessor is untouched
  EXPECT_EQ(stub.AsyncPing_(request)->text(), "AsyncPing");
  EXPECT_EQ(stub.AsyncAsyncPing_(request).Get()->text(), "AsyncPing");
  EXPECT_EQ(stub.AsyncPing(request).Get().status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(stub.delete_2(request)->text(), "delete");
  EXPECT_EQ(stub.delete_(request)->text(), "delete_");
  EXPECT_STREQ(::kw::Plain::kMethoddelete_2.full_name, "/kw.Plain/delete");
  EXPECT_STREQ(::kw::Plain::kMethoddelete_.full_name, "/kw.Plain/delete_");
  EXPECT_STREQ(::kw::Plain::kMethods_.full_name, "/kw.Plain/s");
  EXPECT_STREQ(::kw::Plain::kMethodCount_.full_name, "/kw.Plain/Count");
  EXPECT_EQ(stub.Service_(request).status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(stub.Stub_(request).status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(stub.StubInterface_(request).status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(service.name(), "kw.Plain");
}

TEST(GeneratedCode, WellKnownTypes) {
  class ClockImpl final : public ::wkt::test::Clock::Service {
   public:
    absl::Status Now(::locus::ServerContext*, const ::google::protobuf::Empty*,
                     ::google::protobuf::Timestamp* response) override {
      response->set_seconds(42);
      return absl::OkStatus();
    }
  } service;
  ::wkt::test::Clock::Stub stub(std::make_shared<FakeChannel>(&service));
  absl::StatusOr<::google::protobuf::Timestamp> now = stub.Now(::google::protobuf::Empty());
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->seconds(), 42);
}

TEST(GeneratedCode, OnewayStubCompletes) {
  ::opts::Logger::Service logger;  // unimplemented; the fake still answers
  auto channel = std::make_shared<FakeChannel>(&logger);
  ::opts::Logger::Stub stub(channel);
  ::opts::LogLine line;
  line.set_text("hello");
  EXPECT_EQ(stub.Write(line).status().code(), absl::StatusCode::kUnimplemented);
  ASSERT_NE(channel->last_method(), nullptr);
  EXPECT_TRUE(channel->last_method()->oneway);
}

// The mangling helper, directly.
TEST(MethodCppNames, Mangling) {
  EXPECT_TRUE(::locus::codegen::IsCppKeyword("delete"));
  EXPECT_TRUE(::locus::codegen::IsCppKeyword("co_await"));
  EXPECT_FALSE(::locus::codegen::IsCppKeyword("Delete"));
}

}  // namespace
