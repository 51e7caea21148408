#include "internal/call_header_codec.h"

namespace locus::internal {
namespace {

void PutVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

size_t VarintSize(uint64_t value) {
  size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}

// Field with wire type 2 (length-delimited).
void PutBytes(uint32_t field, absl::string_view bytes, std::string* out) {
  out->push_back(static_cast<char>((field << 3) | 2));
  PutVarint(bytes.size(), out);
  out->append(bytes.data(), bytes.size());
}

}  // namespace

void EncodeCallHeader(absl::string_view method, int64_t timeout_ns, const Metadata& metadata,
                      std::string* out) {
  size_t estimate = 2 + method.size() + 11;
  for (const auto& [key, value] : metadata) estimate += 8 + key.size() + value.size();
  out->reserve(out->size() + estimate);
  if (!method.empty()) PutBytes(1, method, out);  // bytes method = 1
  if (timeout_ns != 0) {                           // int64 timeout_ns = 2
    out->push_back(static_cast<char>((2 << 3) | 0));
    PutVarint(static_cast<uint64_t>(timeout_ns), out);
  }
  for (const auto& [key, value] : metadata) {  // repeated MetadataEntry metadata = 3
    size_t inner = 0;
    if (!key.empty()) inner += 1 + VarintSize(key.size()) + key.size();
    if (!value.empty()) inner += 1 + VarintSize(value.size()) + value.size();
    out->push_back(static_cast<char>((3 << 3) | 2));
    PutVarint(inner, out);
    if (!key.empty()) PutBytes(1, key, out);
    if (!value.empty()) PutBytes(2, value, out);
  }
}

}  // namespace locus::internal
