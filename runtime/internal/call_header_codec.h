// Encodes the meta section of a REQUEST frame (wire.CallHeader) directly,
// without building a protobuf message: this runs once per call on the
// client's hot path. The output is byte-for-byte what
// wire::CallHeader::SerializeAsString() produces for the same fields
// (checked by call_header_codec_test.cc), so peers parse it with protobuf.
//
// Example:
//   std::string meta;
//   EncodeCallHeader("/pkg.Svc/Method", /*timeout_ns=*/0, options.metadata, &meta);
#ifndef LOCUS_RUNTIME_INTERNAL_CALL_HEADER_CODEC_H_
#define LOCUS_RUNTIME_INTERNAL_CALL_HEADER_CODEC_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "locus/call_options.h"

namespace locus::internal {

// Appends the encoding to `*out`. `timeout_ns` 0 means no deadline.
void EncodeCallHeader(absl::string_view method, int64_t timeout_ns, const Metadata& metadata,
                      std::string* out);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_CALL_HEADER_CODEC_H_
