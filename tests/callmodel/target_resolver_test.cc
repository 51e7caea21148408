// Unit tests of the pieces under balanced channels: target parsing and
// resolution (internal/target_resolver.h), the backoff
// (internal/backoff.h) and the mark of calls no server saw
// (internal/call_not_seen.h).
#include <algorithm>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "internal/backoff.h"
#include "internal/call_not_seen.h"
#include "internal/target_resolver.h"
#include "locus/transport.h"

namespace locus::internal {
namespace {

std::vector<std::string> Addresses(absl::string_view target) {
  absl::StatusOr<std::vector<TargetElement>> elements = ParseTarget(target, DefaultTransportRegistry());
  EXPECT_TRUE(elements.ok()) << target << ": " << elements.status();
  if (!elements.ok()) return {};
  std::vector<std::string> out;
  for (const TargetElement& element : *elements) {
    out.push_back(element.is_dns() ? "dns " + element.host + " " + element.port : element.address);
  }
  return out;
}

TEST(TargetResolver, BalancedTargetsHaveACommaOrTheDnsScheme) {
  EXPECT_TRUE(IsBalancedTarget("tcp://a:1,b:2"));
  EXPECT_TRUE(IsBalancedTarget("dns:///localhost:80"));
  EXPECT_TRUE(IsBalancedTarget("dns:localhost:80"));
  EXPECT_FALSE(IsBalancedTarget("tcp://a:1"));
  EXPECT_FALSE(IsBalancedTarget("unix:/run/dns.sock"));
  EXPECT_FALSE(IsBalancedTarget("shm-fd:3"));
}

TEST(TargetResolver, ElementsWithoutASchemeTakeThePreviousOne) {
  EXPECT_EQ(Addresses("tcp://a:1,b:2, [::1]:3"),
            (std::vector<std::string>{"tcp://a:1", "tcp://b:2", "tcp://[::1]:3"}));
  EXPECT_EQ(Addresses("unix:/a,tcp://b:1,c:2"),
            (std::vector<std::string>{"unix:/a", "tcp://b:1", "tcp://c:2"}));
  EXPECT_EQ(Addresses("unix:/a,/b"), (std::vector<std::string>{"unix:/a", "unix:/b"}));
  EXPECT_EQ(Addresses("dns:///a:1,b:2,tcp://c:3"),
            (std::vector<std::string>{"dns a 1", "dns b 2", "tcp://c:3"}));
  EXPECT_EQ(Addresses("dns:[::1]:80"), (std::vector<std::string>{"dns ::1 80"}));
  EXPECT_EQ(Addresses("shm:/a,udp://b:1"), (std::vector<std::string>{"shm:/a", "udp://b:1"}));
}

TEST(TargetResolver, BadTargetsAreInvalidArguments) {
  for (const char* target :
       {"", "a,b", "tcp://a:1,,b:2", "dns://8.8.8.8/a:1", "dns:///a", "dns:///a:", "dns:///:80", "dns:///a:65536",
        "dns:///a:-1", "dns:///[::1]80", "dns://a:1", "tcp://a:1,fd:3", "shm-fd:3,tcp://a:1"}) {
    absl::StatusOr<std::vector<TargetElement>> elements = ParseTarget(target, DefaultTransportRegistry());
    EXPECT_TRUE(absl::IsInvalidArgument(elements.status())) << "\"" << target << "\": " << elements.status();
  }
}

TEST(TargetResolver, ResolvesNamesAndDropsDuplicates) {
  absl::StatusOr<std::vector<TargetElement>> elements =
      ParseTarget("dns:///localhost:80,tcp://127.0.0.1:80,dns:///[::1]:81,unix:/a", DefaultTransportRegistry());
  ASSERT_TRUE(elements.ok()) << elements.status();
  EXPECT_TRUE(HasDnsElement(*elements));
  absl::StatusOr<std::vector<std::string>> addresses = ResolveTarget(*elements);
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  int loopback = 0;
  for (const std::string& address : *addresses) loopback += address == "tcp://127.0.0.1:80" ? 1 : 0;
  EXPECT_EQ(loopback, 1) << "localhost's 127.0.0.1 and the literal one are one backend";
  EXPECT_NE(std::find(addresses->begin(), addresses->end(), "tcp://[::1]:81"), addresses->end());
  EXPECT_EQ(addresses->back(), "unix:/a");

  absl::StatusOr<std::vector<TargetElement>> plain = ParseTarget("unix:/a,/b", DefaultTransportRegistry());
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(HasDnsElement(*plain));
}

TEST(Backoff, GrowsByTheMultiplierUpToTheMaximumAndStartsOverAfterReset) {
  ExponentialBackoff backoff(ConnectionBackoff{absl::Milliseconds(100), 2.0, 0.0, absl::Milliseconds(300)});
  EXPECT_EQ(backoff.NextDelay(), absl::Milliseconds(100));
  EXPECT_EQ(backoff.NextDelay(), absl::Milliseconds(200));
  EXPECT_EQ(backoff.NextDelay(), absl::Milliseconds(300));
  EXPECT_EQ(backoff.NextDelay(), absl::Milliseconds(300));
  backoff.Reset();
  EXPECT_EQ(backoff.NextDelay(), absl::Milliseconds(100));
}

TEST(Backoff, JitterSpreadsEachWaitWithinItsFraction) {
  bool below = false;
  bool above = false;
  for (int i = 0; i < 200; ++i) {
    ExponentialBackoff backoff(ConnectionBackoff{absl::Seconds(1), 1.6, 0.2, absl::Seconds(10)});
    EXPECT_EQ(backoff.NextDelay(), absl::Seconds(1));  // the first: exact (gRPC)
    const absl::Duration delay = backoff.NextDelay();  // 1.6 s +- 20%
    EXPECT_GE(delay, absl::Milliseconds(1280));
    EXPECT_LE(delay, absl::Milliseconds(1920));
    below = below || delay < absl::Milliseconds(1600);
    above = above || delay > absl::Milliseconds(1600);
  }
  EXPECT_TRUE(below && above) << "no spread in 200 draws";
}

TEST(Backoff, NonsensicalPoliciesStayBounded) {
  ExponentialBackoff backoff(ConnectionBackoff{absl::ZeroDuration(), 0.5, 7.0, -absl::Seconds(1)});
  const absl::Duration first = backoff.NextDelay();
  EXPECT_GE(first, absl::ZeroDuration());
  EXPECT_LE(first, absl::Milliseconds(2));
  EXPECT_LE(backoff.NextDelay(), absl::Milliseconds(2));
}

TEST(CallNotSeen, MarksOnlyFailuresAndKeepsCodeAndMessage) {
  absl::Status marked = MarkNotSeen(absl::UnavailableError("connection refused"));
  EXPECT_TRUE(IsNotSeen(marked));
  EXPECT_TRUE(absl::IsUnavailable(marked));
  EXPECT_EQ(marked.message(), "connection refused");
  EXPECT_FALSE(IsNotSeen(absl::UnavailableError("connection lost")));
  EXPECT_TRUE(MarkNotSeen(absl::OkStatus()).ok());
  EXPECT_FALSE(IsNotSeen(MarkNotSeen(absl::OkStatus())));
}

}  // namespace
}  // namespace locus::internal
