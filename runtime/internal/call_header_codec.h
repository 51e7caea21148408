// Encodes and decodes the meta section of a REQUEST frame (wire.CallHeader)
// directly, without building a protobuf message: this runs once per call on
// each side's hot path. The encoding is byte-for-byte what
// wire::CallHeader::SerializeAsString() produces for the same fields, and the
// decoder accepts exactly what wire::CallHeader::ParseFromString() accepts
// (any field order, repeated fields, unknown fields skipped); both are checked
// against protobuf by call_header_codec_test.cc.
//
// Example:
//   std::string meta;
//   EncodeCallHeader("/pkg.Svc/Method", /*timeout_ns=*/0, options.metadata, &meta);
//   CallHeaderView header;
//   if (!DecodeCallHeader(meta, &header)) reject();
//   // header.method views `meta`: valid while `meta` is.
#ifndef LOCUS_RUNTIME_INTERNAL_CALL_HEADER_CODEC_H_
#define LOCUS_RUNTIME_INTERNAL_CALL_HEADER_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "locus/call_options.h"

namespace locus::internal {

// The size of the encoding. `timeout_ns` 0 means no deadline.
size_t CallHeaderSize(absl::string_view method, int64_t timeout_ns, const Metadata& metadata);
// Writes the encoding, exactly CallHeaderSize() bytes, at `out`; returns
// its end. For hot paths that encode into a stack buffer.
char* WriteCallHeader(absl::string_view method, int64_t timeout_ns, const Metadata& metadata,
                      char* out);
// Appends the encoding to `*out`.
void EncodeCallHeader(absl::string_view method, int64_t timeout_ns, const Metadata& metadata,
                      std::string* out);

// The object a call addresses (CallHeader fields 4 and 5); id 0: none.
// Encoded after the other fields, as protobuf orders them.
size_t ObjectTargetSize(uint64_t object_id, absl::string_view token);
char* WriteObjectTarget(uint64_t object_id, absl::string_view token, char* out);

// A decoded CallHeader. `method` and `object_token` point into the decoded
// bytes.
struct CallHeaderView {
  absl::string_view method;
  int64_t timeout_ns = 0;
  Metadata metadata;
  uint64_t object_id = 0;
  absl::string_view object_token;
  // wire.CountedRef entries (field 6), in order; tokens view the bytes.
  struct CountedRef {
    uint64_t object_id = 0;
    absl::string_view token;
    uint32_t count = 0;
  };
  std::vector<CountedRef> counted_refs;
};

// Decodes untrusted bytes. False if they are not a valid wire.CallHeader
// (`*out` is then unspecified).
bool DecodeCallHeader(absl::string_view bytes, CallHeaderView* out);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_CALL_HEADER_CODEC_H_
