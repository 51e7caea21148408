#include "internal/call_header_codec.h"

#include <random>

#include "absl/strings/escaping.h"
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
        const std::string reference = Reference(method, timeout, md);
        std::string ours = "prefix";
        EncodeCallHeader(method, timeout, md, &ours);
        EXPECT_EQ(ours, "prefix" + reference) << method << " " << timeout;
        // The raw writer: exactly the computed size, guarded on both sides.
        const size_t size = CallHeaderSize(method, timeout, md);
        ASSERT_EQ(size, reference.size());
        std::string buffer(size + 2, '#');
        char* end = WriteCallHeader(method, timeout, md, buffer.data() + 1);
        EXPECT_EQ(end, buffer.data() + 1 + size);
        EXPECT_EQ(buffer, "#" + reference + "#");
      }
    }
  }
}

// Protobuf's verdict and fields for `bytes`, next to ours.
void ExpectSameAsProtobuf(const std::string& bytes) {
  wire::CallHeader reference;
  const bool reference_ok = reference.ParseFromString(bytes);
  CallHeaderView ours;
  const bool ours_ok = DecodeCallHeader(bytes, &ours);
  ASSERT_EQ(ours_ok, reference_ok) << "input: " << absl::BytesToHexString(bytes);
  if (!ours_ok) return;
  EXPECT_EQ(ours.method, reference.method());
  EXPECT_EQ(ours.timeout_ns, reference.timeout_ns());
  ASSERT_EQ(ours.metadata.size(), static_cast<size_t>(reference.metadata_size()));
  for (int i = 0; i < reference.metadata_size(); ++i) {
    EXPECT_EQ(ours.metadata[i].first, reference.metadata(i).key());
    EXPECT_EQ(ours.metadata[i].second, reference.metadata(i).value());
  }
  EXPECT_EQ(ours.object_id, reference.object_id());
  EXPECT_EQ(ours.object_token, reference.object_token());
  ASSERT_EQ(ours.counted_refs.size(), static_cast<size_t>(reference.counted_refs_size()));
  for (int i = 0; i < reference.counted_refs_size(); ++i) {
    EXPECT_EQ(ours.counted_refs[i].object_id, reference.counted_refs(i).object_id());
    EXPECT_EQ(ours.counted_refs[i].token, reference.counted_refs(i).token());
    EXPECT_EQ(ours.counted_refs[i].count, reference.counted_refs(i).count());
  }
}

TEST(CallHeaderCodec, ObjectTargetMatchesProtobuf) {
  for (uint64_t id : {uint64_t{0}, uint64_t{1}, uint64_t{0x0102030405060708}, ~uint64_t{0}}) {
    for (absl::string_view token : {absl::string_view(), absl::string_view("0123456789abcdef")}) {
      wire::CallHeader header;
      header.set_method("/pkg.Svc/M");
      header.set_timeout_ns(5);
      header.set_object_id(id);
      header.set_object_token(std::string(token));
      std::string ours;
      EncodeCallHeader("/pkg.Svc/M", 5, {}, &ours);
      const size_t base = ours.size();
      ours.resize(base + ObjectTargetSize(id, token));
      EXPECT_EQ(WriteObjectTarget(id, token, ours.data() + base), ours.data() + ours.size());
      EXPECT_EQ(ours, header.SerializeAsString());
      CallHeaderView view;
      ASSERT_TRUE(DecodeCallHeader(ours, &view));
      EXPECT_EQ(view.object_id, id);
      EXPECT_EQ(view.object_token, token);
    }
  }
}

TEST(CallHeaderCodec, DecodesWhatItEncodes) {
  Metadata md = {{"k", "v"}, {"", "empty key"}, {std::string(200, 'k'), std::string(300, 'v')}};
  for (int64_t timeout : {int64_t{0}, int64_t{1}, int64_t{1} << 40, int64_t{-5}}) {
    std::string bytes;
    EncodeCallHeader("/pkg.Svc/Method", timeout, md, &bytes);
    CallHeaderView view;
    ASSERT_TRUE(DecodeCallHeader(bytes, &view));
    EXPECT_EQ(view.method, "/pkg.Svc/Method");
    EXPECT_EQ(view.timeout_ns, timeout);
    EXPECT_EQ(view.metadata, md);
  }
}

TEST(CallHeaderCodec, AcceptsWhatProtobufAccepts) {
  const std::string cases[] = {
      "",                                            // all defaults
      std::string("\x10\x05\x0a\x02/m", 6),          // fields out of order
      std::string("\x0a\x01" "a" "\x0a\x01" "b", 6),  // repeated singular field: last wins
      std::string("\x20\x07\x0a\x01m", 5),           // unknown varint field
      std::string("\x21" "12345678" "\x0a\x01m", 12),  // object_id (64-bit)
      std::string("\x29" "12345678", 9),              // unknown 64-bit field
      std::string("\x21" "1234", 5),                  // truncated object_id
      std::string("\x2a\x03xyz", 5),                  // object_token
      std::string("\x25" "1234", 5),                  // unknown 32-bit field
      std::string("\x32\x03xyz", 5),                  // unknown length-delimited field
      std::string("\x0b\x10\x01\x0c\x0a\x01m", 7),   // a group in place of field 1, skipped
      std::string("\x2b\x33\x08\x01\x34\x2c", 6),     // nested groups
      std::string("\x08\x01", 2),                    // field 1 with the wrong wire type: unknown
      std::string("\x1a\x04\x0a\x00\x12\x00", 6),     // metadata entry with empty key and value
      std::string("\x1a\x02\x18\x01", 4),             // metadata entry with an unknown field
      // Rejected by both:
      std::string("\x0a\x05/m", 4),                   // truncated bytes
      std::string("\x10", 1),                         // truncated varint
      std::string("\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12),  // 11-byte varint
      std::string("\x00", 1),                         // tag 0
      std::string("\x0c", 1),                         // end group without start
      std::string("\x0b\x0a\x01m", 4),                // group never ended
      std::string("\x0b\x14", 2),                     // group ended with the wrong number
      std::string("\x0e", 1),                         // wire type 6
      std::string("\x1a\x03\x0a\x05m", 5),            // metadata entry overruns its length
  };
  for (const std::string& bytes : cases) ExpectSameAsProtobuf(bytes);
}

// Random mutations of valid headers: our verdict and fields always match
// protobuf's (deterministic seed, so a failure reproduces).
TEST(CallHeaderCodec, MutatedInputsMatchProtobuf) {
  std::mt19937 rng(12345);
  std::string base;
  EncodeCallHeader("/pkg.Svc/Method", 123456789, {{"key", "value"}, {"k2", ""}}, &base);
  {
    // With an object target and counted references (fields 4 to 6).
    wire::CallHeader extra;
    extra.set_object_id(42);
    extra.set_object_token("0123456789abcdef");
    wire::CountedRef* ref = extra.add_counted_refs();
    ref->set_object_id(7);
    ref->set_token("tok");
    ref->set_count(3);
    base += extra.SerializeAsString();
  }
  for (int i = 0; i < 20000; ++i) {
    std::string bytes = base;
    const int mutations = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < mutations; ++m) {
      switch (rng() % 4) {
        case 0:
          if (!bytes.empty()) bytes[rng() % bytes.size()] = static_cast<char>(rng());
          break;
        case 1:
          if (!bytes.empty()) bytes.erase(rng() % bytes.size(), 1 + rng() % 3);
          break;
        case 2:
          bytes.insert(bytes.begin() + static_cast<long>(rng() % (bytes.size() + 1)),
                       static_cast<char>(rng()));
          break;
        case 3:
          bytes.resize(rng() % (bytes.size() + 1));
          break;
      }
    }
    ExpectSameAsProtobuf(bytes);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace locus::internal
