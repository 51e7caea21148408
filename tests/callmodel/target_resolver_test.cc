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

bool Balanced(absl::string_view target) { return IsBalancedTarget(target, DefaultTransportRegistry()); }

TEST(TargetResolver, BalancedTargetsHaveACommaOrTheDnsScheme) {
  EXPECT_TRUE(Balanced("tcp://a:1,b:2"));
  EXPECT_TRUE(Balanced("dns:///localhost:80"));
  EXPECT_TRUE(Balanced("dns:localhost:80"));
  EXPECT_TRUE(Balanced("unix:/a,tcp://b:1"));
  EXPECT_TRUE(Balanced("unix:/a,unix:/b"));
  EXPECT_FALSE(Balanced("tcp://a:1"));
  EXPECT_FALSE(Balanced("unix:/run/dns.sock"));
  EXPECT_FALSE(Balanced("shm-fd:3"));
}

// A comma in a socket's path or name is part of it (regression: such
// addresses, RMI owner endpoints among them, connected before lists).
TEST(TargetResolver, CommasInSocketPathsAreNotSplit) {
  for (const char* address : {"unix:/tmp/x/a,b.sock", "unix-abstract:a,b", "shm:/tmp/x/a,b.sock",
                              "shm-abstract:a,b", "unix:/a,/b", "unix:/a,b:2"}) {
    EXPECT_FALSE(Balanced(address)) << address;
  }
  EXPECT_EQ(Addresses("unix:/tmp/x/a,b.sock,tcp://c:1,d:2"),
            (std::vector<std::string>{"unix:/tmp/x/a,b.sock", "tcp://c:1", "tcp://d:2"}));
  EXPECT_EQ(Addresses("tcp://c:1,unix:/a,b,shm:/c,d"),
            (std::vector<std::string>{"tcp://c:1", "unix:/a,b", "shm:/c,d"}));
}

// "dns:7000" after a tcp:// element is the host "dns" with a port, not a
// DNS name without one.
TEST(TargetResolver, AHostNamedDnsTakesThePreviousScheme) {
  EXPECT_EQ(Addresses("tcp://a:1,dns:7000"), (std::vector<std::string>{"tcp://a:1", "tcp://dns:7000"}));
  EXPECT_EQ(Addresses("tcp://a:1,dns:///b:2"), (std::vector<std::string>{"tcp://a:1", "dns b 2"}));
}

// Resolved IPv6 addresses keep their scope ("%lo"): without it a
// link-local address names no interface.
TEST(TargetResolver, ResolvedIpv6AddressesKeepTheirScope) {
  absl::StatusOr<std::vector<std::string>> addresses = ResolveTarget({TargetElement{"", "fe80::1%lo", "80"}});
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  EXPECT_EQ(*addresses, (std::vector<std::string>{"tcp://[fe80::1%lo]:80"}));
}

TEST(TargetResolver, ElementsWithoutASchemeTakeThePreviousOne) {
  EXPECT_EQ(Addresses("tcp://a:1,b:2, [::1]:3"),
            (std::vector<std::string>{"tcp://a:1", "tcp://b:2", "tcp://[::1]:3"}));
  EXPECT_EQ(Addresses("unix:/a,tcp://b:1,c:2"),
            (std::vector<std::string>{"unix:/a", "tcp://b:1", "tcp://c:2"}));
  EXPECT_EQ(Addresses("unix:/a,unix:/b"), (std::vector<std::string>{"unix:/a", "unix:/b"}));
  EXPECT_EQ(Addresses("dns:///a:1,b:2,tcp://c:3"),
            (std::vector<std::string>{"dns a 1", "dns b 2", "tcp://c:3"}));
  EXPECT_EQ(Addresses("dns:[::1]:80"), (std::vector<std::string>{"dns ::1 80"}));
  EXPECT_EQ(Addresses("shm:/a,udp://b:1"), (std::vector<std::string>{"shm:/a", "udp://b:1"}));
}

TEST(TargetResolver, BadTargetsAreInvalidArguments) {
  for (const char* target :
       {"", "a,b", "tcp://a:1,,b:2", "dns://8.8.8.8/a:1", "dns:///a", "dns:///a:", "dns:///:80", "dns:///a:65536",
        "dns:///a:-1", "dns:///[::1]80", "dns://a:1", "tcp://a:1,fd:3", "shm-fd:3,tcp://a:1",
        // Every element is checked, not only the first.
        "tcp://a:1,b", "tcp://a:1,b:0", "tcp://a:1,b:x", "tcp://a:1,::1:2", "udp://a:1,b:99999",
        "tcp://a:1,tcp://", "unix:/a,unix:",
        // An IPv6 address after dns:/// needs its brackets.
        "dns:///fe80::1:80", "dns:::1:80"}) {
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

  absl::StatusOr<std::vector<TargetElement>> plain = ParseTarget("unix:/a,unix:/b", DefaultTransportRegistry());
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(HasDnsElement(*plain));
}

// Resolving again: a name that fails for a moment keeps its last
// addresses (its backends stay), the others take their new ones.
TEST(TargetResolver, ANameThatFailsToResolveKeepsItsLastAddresses) {
  const std::vector<std::vector<std::string>> previous = {{"tcp://10.0.0.1:80", "tcp://10.0.0.2:80"},
                                                          {"unix:/a"}, {"tcp://10.0.0.9:81"}};
  std::vector<absl::StatusOr<std::vector<std::string>>> each;
  each.push_back(absl::UnavailableError("cannot resolve a: Temporary failure in name resolution"));
  each.push_back(std::vector<std::string>{"unix:/a"});
  each.push_back(std::vector<std::string>{"tcp://10.0.0.10:81"});
  absl::StatusOr<std::vector<std::string>> addresses = CombineAddresses(each, &previous);
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  EXPECT_EQ(*addresses, (std::vector<std::string>{"tcp://10.0.0.1:80", "tcp://10.0.0.2:80", "unix:/a",
                                                  "tcp://10.0.0.10:81"}));
  // The first resolution has nothing to keep.
  addresses = CombineAddresses(each, nullptr);
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  EXPECT_EQ(*addresses, (std::vector<std::string>{"unix:/a", "tcp://10.0.0.10:81"}));
  // Nothing at all: UNAVAILABLE naming the failure.
  addresses = CombineAddresses({absl::UnavailableError("cannot resolve b")}, nullptr);
  EXPECT_TRUE(absl::IsUnavailable(addresses.status()));
  EXPECT_NE(addresses.status().message().find("cannot resolve b"), std::string::npos);
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

// However large the jitter asked for, a wait is never near zero: at least
// half the backoff (failing backends are not retried at once).
TEST(Backoff, JitterNeverMakesAWaitNearZero) {
  for (double jitter : {1.0, 7.0}) {
    for (int i = 0; i < 200; ++i) {
      ExponentialBackoff backoff(ConnectionBackoff{absl::Seconds(1), 1.6, jitter, absl::Seconds(10)});
      EXPECT_EQ(backoff.NextDelay(), absl::Seconds(1));  // the first: exact
      const absl::Duration delay = backoff.NextDelay();  // 1.6 s, spread
      EXPECT_GE(delay, absl::Milliseconds(800)) << "jitter " << jitter;
      EXPECT_LE(delay, absl::Milliseconds(2400)) << "jitter " << jitter;
    }
  }
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
