// Where retries happen relative to the other layers of a channel
// (docs/architecture.md, "Which layer retries what"), on every transport:
// interceptors wrap the whole channel, so they see one call however many
// attempts it takes; on a target naming several servers, a method's retry
// policy retries on the backend the call is on and the balancer adds no
// attempts of its own to a call its server saw, and wait_for_ready waits
// for a backend to come back.
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "connlife_fixture.h"
#include "gtest/gtest.h"

namespace locus::connlife {
namespace {

using ::locus::conformance::ReliableKinds;
using ::locus::conformance::SiblingAddress;
using ::locus::conformance::TransportKinds;

Note Text(const std::string& text) {
  Note note;
  note.set_text(text);
  return note;
}

// Counts the calls its interceptors see, and how they ended.
class CountingFactory final : public ClientInterceptorFactory {
 public:
  std::unique_ptr<ClientInterceptor> Create(const ClientCallInfo&) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    return std::make_unique<Counting>(this);
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::vector<absl::StatusCode> finishes() {
    absl::MutexLock lock(&mu_);
    return finishes_;
  }

 private:
  class Counting final : public ClientInterceptor {
   public:
    explicit Counting(CountingFactory* factory) : factory_(factory) {}
    void OnFinish(ClientCallInfo&, absl::Status& status) override {
      absl::MutexLock lock(&factory_->mu_);
      factory_->finishes_.push_back(status.code());
    }

   private:
    CountingFactory* const factory_;
  };

  absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<absl::StatusCode> finishes_ ABSL_GUARDED_BY(mu_);
};

template <typename C>
class Layers : public ConnLife<C> {};
TYPED_TEST_SUITE(Layers, TransportKinds, ConfigNames);

TYPED_TEST(Layers, AnInterceptorSeesOneCallHoweverManyAttemptsItTakes) {
  auto counting = std::make_shared<CountingFactory>();
  ChannelOptions options;
  options.interceptors.push_back(counting);
  this->Start(ServerOptions{}, options);
  absl::StatusOr<Note> reply =
      this->flaky_stub_->Call(Text("sync"), FlakyService::Failing("sync", 2, absl::StatusCode::kUnavailable));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(this->flaky_.attempts("sync"), 3);

  Note async_reply;
  absl::Status async_status;
  absl::Notification async_done;
  this->flaky_stub_->AsyncCall(Text("async"), &async_reply,
                               FlakyService::Failing("async", 2, absl::StatusCode::kUnavailable),
                               [&](absl::Status status) {
                                 async_status = std::move(status);
                                 async_done.Notify();
                               });
  ASSERT_TRUE(async_done.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_TRUE(async_status.ok()) << async_status;
  EXPECT_EQ(this->flaky_.attempts("async"), 3);

  EXPECT_EQ(this->Stats().retries.by_policy, 4u);
  EXPECT_EQ(counting->calls(), 2);
  EXPECT_EQ(counting->finishes(), (std::vector<absl::StatusCode>{absl::StatusCode::kOk, absl::StatusCode::kOk}));
}

// Two servers of the kind behind one balanced channel (pick-first: the
// first that connects takes the calls).
template <typename C>
class BalancedLayers : public ConnLife<C> {
 public:
  using Kind = typename C::TransportKind;

  void StartTwo(ChannelOptions options = {}) {
    this->Start();  // the first server, and a plain channel the test ignores
    second_ = std::make_unique<Server>(ServerOptions{});
    ASSERT_TRUE(second_->RegisterService(&second_flaky_).ok());
    ASSERT_TRUE(second_->AddListeningAddress(SiblingAddress(Kind::ListenAddress(this->dir_), this->dir_, "b")).ok());
    absl::Status started = second_->Start();
    ASSERT_TRUE(started.ok()) << started;
    second_address_ = second_->listening_addresses()[0];
    options.allowed_transports = Kind::kTransport;
    options.balancing.backoff.initial_backoff = absl::Milliseconds(20);
    options.balancing.backoff.max_backoff = absl::Milliseconds(100);
    auto channel = Connect(absl::StrCat(this->address_, ",", second_address_), options);
    ASSERT_TRUE(channel.ok()) << channel.status();
    balanced_ = *channel;
    stub_ = std::make_unique<Flaky::Stub>(balanced_);
  }
  void TearDown() override {
    stub_.reset();
    balanced_.reset();
    if (second_ != nullptr) second_->Shutdown();
    ConnLife<C>::TearDown();
  }
  int Attempts(const std::string& key) { return this->flaky_.attempts(key) + second_flaky_.attempts(key); }

  FlakyService second_flaky_;
  std::unique_ptr<Server> second_;
  std::string second_address_;
  std::shared_ptr<Channel> balanced_;
  std::unique_ptr<Flaky::Stub> stub_;
};
TYPED_TEST_SUITE(BalancedLayers, ReliableKinds, ConfigNames);

TYPED_TEST(BalancedLayers, APolicyRetriesOnTheBackendAndTheBalancerAddsNoAttempts) {
  ASSERT_NO_FATAL_FAILURE(this->StartTwo());
  absl::StatusOr<Note> reply =
      this->stub_->Call(Text("a"), FlakyService::Failing("twice", 2, absl::StatusCode::kUnavailable));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(this->Attempts("twice"), 3);
  // The server saw every attempt: the balancer does not send the call to
  // the other backend (retry_sent_calls is off), so the policy's three
  // attempts are all there are, not three per backend.
  EXPECT_EQ(this->stub_->Call(Text("b"), FlakyService::Failing("always", 10, absl::StatusCode::kUnavailable))
                .status()
                .code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(this->Attempts("always"), 3);
}

TYPED_TEST(BalancedLayers, WaitForReadyWaitsForABackendToComeBack) {
  ASSERT_NO_FATAL_FAILURE(this->StartTwo());
  ASSERT_TRUE(this->stub_->Call(Text("up"), Watchdog()).ok());
  this->server_->Shutdown();
  this->second_->Shutdown();
  // A fail-fast call fails with both gone.
  EXPECT_EQ(this->stub_->Call(Text("down"), Watchdog()).status().code(), absl::StatusCode::kUnavailable);
  CallOptions soon = CallOptions::WithTimeout(absl::Milliseconds(200));
  soon.wait_for_ready = true;
  EXPECT_EQ(this->stub_->Call(Text("soon"), soon).status().code(), absl::StatusCode::kDeadlineExceeded);

  CallOptions patient = Watchdog();
  patient.wait_for_ready = true;
  absl::Status sync_status;
  absl::Notification sync_done;
  Note async_reply;
  absl::Status async_status;
  absl::Notification async_done;
  {
    ScopedThread caller([&] {
      sync_status = this->stub_->Call(Text("sync"), patient).status();
      sync_done.Notify();
    });
    this->stub_->AsyncCall(Text("async"), &async_reply, patient, [&](absl::Status status) {
      async_status = std::move(status);
      async_done.Notify();
    });
    EXPECT_FALSE(sync_done.HasBeenNotified());
    this->Restart();  // the first server, on its address again
    ASSERT_TRUE(sync_done.WaitForNotificationWithTimeout(kWatchdog));
    ASSERT_TRUE(async_done.WaitForNotificationWithTimeout(kWatchdog));
  }
  EXPECT_TRUE(sync_status.ok()) << sync_status;
  EXPECT_TRUE(async_status.ok()) << async_status;
}

}  // namespace
}  // namespace locus::connlife
