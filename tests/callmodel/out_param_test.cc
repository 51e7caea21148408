// The response parameter of stub methods (locus::Out, locus/out.h):
// `stub.Greet(request, {})` means "default options" and returns the reply;
// a null response is refused at compile time when it is a literal, and with
// INVALID_ARGUMENT at run time when it is a null pointer variable. The same
// `{}` call on every transport is in call_model_conformance_test.cc.
#include <memory>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "callmodel.locus.h"
#include "callmodel_services.h"
#include "gtest/gtest.h"
#include "locus/locus.h"
#include "tests/testing/test_util.h"

namespace callmodel {
namespace {

// Whether `stub.Greet(request, <second>)` / `(request, <second>, options)`
// compiles, for `second` of type `Second`. A detector for the cases written
// with literals (`{}`, `nullptr`) follows each.
template <typename StubT, typename Second, typename = void>
struct GreetAccepts : std::false_type {};
template <typename StubT, typename Second>
struct GreetAccepts<StubT, Second,
                    std::void_t<decltype(std::declval<StubT&>().Greet(
                        std::declval<const Text&>(), std::declval<Second>()))>> : std::true_type {};

template <typename StubT, typename = void>
struct AcceptsNullLiteral : std::false_type {};
template <typename StubT>
struct AcceptsNullLiteral<StubT, std::void_t<decltype(std::declval<StubT&>().Greet(
                                     std::declval<const Text&>(), nullptr))>> : std::true_type {};

// `{}` for the response and for the options: the old form of the bug.
template <typename StubT, typename = void>
struct AcceptsBracedResponse : std::false_type {};
template <typename StubT>
struct AcceptsBracedResponse<StubT, std::void_t<decltype(std::declval<StubT&>().Greet(
                                        std::declval<const Text&>(), {}, locus::CallOptions()))>>
    : std::true_type {};

template <typename StubT, typename = void>
struct JoinAcceptsBraces : std::false_type {};
template <typename StubT>
struct JoinAcceptsBraces<StubT, std::void_t<decltype(std::declval<StubT&>().Join({}))>>
    : std::true_type {};

template <typename StubT>
constexpr bool OutParameterIsSafe() {
  // `{}` as the second argument selects the overload that returns the reply.
  static_assert(
      std::is_same_v<decltype(std::declval<StubT&>().Greet(std::declval<const Text&>(), {})),
                     absl::StatusOr<Text>>);
  // A pointer still reads as before (and proves the detectors can say yes).
  static_assert(GreetAccepts<StubT, Text*>::value);
  static_assert(std::is_same_v<decltype(std::declval<StubT&>().Greet(std::declval<const Text&>(),
                                                                     std::declval<Text*>())),
                               absl::Status>);
  static_assert(GreetAccepts<StubT, locus::CallOptions>::value);
  // Null literals and `{}` where the response goes do not compile.
  static_assert(!AcceptsNullLiteral<StubT>::value);
  static_assert(!AcceptsBracedResponse<StubT>::value);
  static_assert(!JoinAcceptsBraces<StubT>::value);
  static_assert(!GreetAccepts<StubT, int>::value);
  return true;
}
static_assert(OutParameterIsSafe<Greeter::Stub>());
static_assert(OutParameterIsSafe<Greeter::StubInterface>());
static_assert(!std::is_default_constructible_v<locus::Out<Text>>);
static_assert(std::is_trivially_copyable_v<locus::Out<Text>>);

class OutParamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.RegisterService(&greeter_).ok());
    ASSERT_TRUE(server_.Start().ok());
    absl::StatusOr<std::shared_ptr<locus::Channel>> channel = server_.InProcessChannel();
    ASSERT_TRUE(channel.ok()) << channel.status();
    stub_ = std::make_unique<Greeter::Stub>(*channel);
    request_.set_text("world");
  }

  GreeterImpl greeter_;
  locus::Server server_;
  std::unique_ptr<Greeter::Stub> stub_;
  Text request_;
};

TEST_F(OutParamTest, BracesMeanDefaultOptions) {
  absl::StatusOr<Text> reply = stub_->Greet(request_, {});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->text(), "hello, world");
}

TEST_F(OutParamTest, PointerFillsTheCallersMessage) {
  Text reply;
  ASSERT_TRUE(stub_->Greet(request_, &reply).ok());
  EXPECT_EQ(reply.text(), "hello, world");
  Text again;
  ASSERT_TRUE(stub_->Greet(request_, &again, {}).ok());
  EXPECT_EQ(again.text(), "hello, world");
}

TEST_F(OutParamTest, NullPointerVariableFailsTheCallNotTheProcess) {
  Text* none = nullptr;
  absl::Status sync = stub_->Greet(request_, none);
  EXPECT_EQ(sync.code(), absl::StatusCode::kInvalidArgument) << sync;
  EXPECT_NE(sync.message().find("/callmodel.Greeter/Greet"), std::string::npos) << sync;

  absl::Notification done;
  absl::Status async;
  stub_->AsyncGreet(request_, none, {}, [&](absl::Status status) {
    async = std::move(status);
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(locus::testing::kWatchdog));
  EXPECT_EQ(async.code(), absl::StatusCode::kInvalidArgument) << async;

  locus::ClientWriter<Text> join = stub_->Join(none);
  EXPECT_FALSE(join.Write(request_));
  absl::Status joined = join.Finish();
  EXPECT_EQ(joined.code(), absl::StatusCode::kInvalidArgument) << joined;
}

}  // namespace
}  // namespace callmodel
