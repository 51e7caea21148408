#include "internal/call_header_codec.h"

#include "gtest/gtest.h"
#include "locus/wire.pb.h"

namespace locus::internal {
namespace {

std::string Reference(absl::string_view method, int64_t timeout_ns, const Metadata& metadata) {
  wire::CallHeader header;
  header.set_method(std::string(method));
  header.set_timeout_ns(timeout_ns);
  for (const auto& [k, v] : metadata) {
    wire::MetadataEntry* e = header.add_metadata();
    e->set_key(k);
    e->set_value(v);
  }
  return header.SerializeAsString();
}

TEST(CallHeaderCodec, MatchesProtobufByteForByte) {
  std::string long_value(300, 'v');
  const Metadata cases_md[] = {{}, {{"k", "v"}}, {{"", "empty key"}, {"empty value", ""}},
                               {{"a", long_value}, {std::string(200, 'k'), "b"}}};
  for (int64_t timeout : {int64_t{0}, int64_t{1}, int64_t{127}, int64_t{128}, int64_t{1} << 40}) {
    for (const Metadata& md : cases_md) {
      for (absl::string_view method : {"/pkg.Svc/Method", "", "/x"}) {
        std::string ours;
        EncodeCallHeader(method, timeout, md, &ours);
        EXPECT_EQ(ours, Reference(method, timeout, md)) << method << " " << timeout;
      }
    }
  }
}

}  // namespace
}  // namespace locus::internal
