#include "gtest/gtest.h"
#include "locus/transport.h"

namespace locus {
namespace {

class FakeTransport : public Transport {
 public:
  std::vector<std::string> schemes() const override { return {"fake", "fake2"}; }
  absl::StatusOr<std::unique_ptr<Listener>> Listen(absl::string_view, const TransportOptions&,
                                                   AcceptCallback) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<std::unique_ptr<Connection>> Connect(absl::string_view, const TransportOptions&,
                                                      absl::Time) override {
    return absl::UnimplementedError("fake");
  }
};

TEST(AddressScheme, ParsesSchemes) {
  EXPECT_EQ(AddressScheme("tcp://h:1"), "tcp");
  EXPECT_EQ(AddressScheme("unix:/tmp/x"), "unix");
  EXPECT_EQ(AddressScheme("unix-abstract:n"), "unix-abstract");
  EXPECT_EQ(AddressScheme("/tmp/x"), "");
  EXPECT_EQ(AddressScheme("Bad:x"), "");
}

TEST(TransportRegistry, FindsByScheme) {
  TransportRegistry registry;
  registry.Register(std::make_shared<FakeTransport>());
  EXPECT_NE(registry.Find("fake2"), nullptr);
  EXPECT_EQ(registry.Find("tcp"), nullptr);
  EXPECT_TRUE(registry.ForAddress("fake:x").ok());
  absl::StatusOr<Transport*> missing = registry.ForAddress("nope://x");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("fake, fake2"), absl::string_view::npos)
      << missing.status();
}

}  // namespace
}  // namespace locus
