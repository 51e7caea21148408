#include "internal/call_header_codec.h"

#include <cstring>

namespace locus::internal {
namespace {

size_t VarintSize(uint64_t value) {
  size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}

char* PutVarint(uint64_t value, char* out) {
  while (value >= 0x80) {
    *out++ = static_cast<char>(value | 0x80);
    value >>= 7;
  }
  *out++ = static_cast<char>(value);
  return out;
}

// Field with wire type 2 (length-delimited).
size_t BytesFieldSize(absl::string_view bytes) { return 1 + VarintSize(bytes.size()) + bytes.size(); }
char* PutBytes(uint32_t field, absl::string_view bytes, char* out) {
  *out++ = static_cast<char>((field << 3) | 2);
  out = PutVarint(bytes.size(), out);
  if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
  return out + bytes.size();
}

// The size of a MetadataEntry's encoding (without its own tag and length).
size_t MetadataEntrySize(const std::string& key, const std::string& value) {
  return (key.empty() ? 0 : BytesFieldSize(key)) + (value.empty() ? 0 : BytesFieldSize(value));
}

// Reading: each function advances `*in` past what it consumed and fails on
// truncation or an over-long varint, as protobuf's parser does.
bool GetVarint(absl::string_view* in, uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in->empty()) return false;
    const uint8_t byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    result |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return true;
    }
  }
  return false;  // more than 10 bytes
}

bool GetLengthDelimited(absl::string_view* in, absl::string_view* bytes) {
  uint64_t size = 0;
  if (!GetVarint(in, &size) || size > in->size()) return false;
  *bytes = in->substr(0, size);
  in->remove_prefix(size);
  return true;
}

bool GetTag(absl::string_view* in, uint32_t* field, uint32_t* wire_type);

// Skips the value of a field of an unknown number, as protobuf does
// (including groups, to protobuf's nesting limit).
bool SkipValue(uint32_t field, uint32_t wire_type, absl::string_view* in, int depth = 0) {
  uint64_t ignored = 0;
  absl::string_view ignored_bytes;
  switch (wire_type) {
    case 0:
      return GetVarint(in, &ignored);
    case 1:
      if (in->size() < 8) return false;
      in->remove_prefix(8);
      return true;
    case 2:
      return GetLengthDelimited(in, &ignored_bytes);
    case 3: {  // start group: skip to the matching end group
      if (depth >= 100) return false;
      for (;;) {
        uint32_t inner_field = 0, inner_type = 0;
        if (!GetTag(in, &inner_field, &inner_type)) return false;
        if (inner_type == 4) return inner_field == field;
        if (!SkipValue(inner_field, inner_type, in, depth + 1)) return false;
      }
    }
    case 5:
      if (in->size() < 4) return false;
      in->remove_prefix(4);
      return true;
    default:  // 4 (an end group with no start), 6, 7
      return false;
  }
}

// Reads a tag as protobuf does: at most 5 varint bytes, bits beyond 32
// dropped; field number 0 is invalid.
bool GetTag(absl::string_view* in, uint32_t* field, uint32_t* wire_type) {
  uint32_t tag = 0;
  for (int i = 0;; ++i) {
    if (i == 5 || in->empty()) return false;
    const uint8_t byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    tag |= static_cast<uint32_t>(byte & 0x7fu) << (7 * i);
    if ((byte & 0x80) == 0) break;
  }
  *field = tag >> 3;
  *wire_type = static_cast<uint32_t>(tag & 7);
  return *field != 0;
}

bool DecodeMetadataEntry(absl::string_view in, std::string* key, std::string* value) {
  while (!in.empty()) {
    uint32_t field = 0, wire_type = 0;
    if (!GetTag(&in, &field, &wire_type)) return false;
    absl::string_view bytes;
    if ((field == 1 || field == 2) && wire_type == 2) {
      if (!GetLengthDelimited(&in, &bytes)) return false;
      (field == 1 ? key : value)->assign(bytes.data(), bytes.size());
    } else if (!SkipValue(field, wire_type, &in)) {
      return false;
    }
  }
  return true;
}

bool GetFixed64(absl::string_view* in, uint64_t* value) {
  if (in->size() < 8) return false;
  uint64_t result = 0;
  for (int i = 7; i >= 0; --i) result = (result << 8) | static_cast<uint8_t>((*in)[i]);
  in->remove_prefix(8);
  *value = result;
  return true;
}

bool DecodeCountedRef(absl::string_view in, CallHeaderView::CountedRef* out) {
  while (!in.empty()) {
    uint32_t field = 0, wire_type = 0;
    if (!GetTag(&in, &field, &wire_type)) return false;
    if (field == 1 && wire_type == 1) {
      if (!GetFixed64(&in, &out->object_id)) return false;
    } else if (field == 2 && wire_type == 2) {
      if (!GetLengthDelimited(&in, &out->token)) return false;
    } else if (field == 3 && wire_type == 0) {
      uint64_t count = 0;
      if (!GetVarint(&in, &count)) return false;
      out->count = static_cast<uint32_t>(count);
    } else if (!SkipValue(field, wire_type, &in)) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool DecodeCallHeader(absl::string_view in, CallHeaderView* out) {
  out->method = {};
  out->timeout_ns = 0;
  out->metadata.clear();
  out->object_id = 0;
  out->object_token = {};
  out->counted_refs.clear();
  while (!in.empty()) {
    uint32_t field = 0, wire_type = 0;
    if (!GetTag(&in, &field, &wire_type)) return false;
    if (field == 1 && wire_type == 2) {
      if (!GetLengthDelimited(&in, &out->method)) return false;
    } else if (field == 2 && wire_type == 0) {
      uint64_t value = 0;
      if (!GetVarint(&in, &value)) return false;
      out->timeout_ns = static_cast<int64_t>(value);
    } else if (field == 3 && wire_type == 2) {
      absl::string_view entry;
      if (!GetLengthDelimited(&in, &entry)) return false;
      std::string key, value;
      if (!DecodeMetadataEntry(entry, &key, &value)) return false;
      out->metadata.emplace_back(std::move(key), std::move(value));
    } else if (field == 4 && wire_type == 1) {
      if (!GetFixed64(&in, &out->object_id)) return false;
    } else if (field == 5 && wire_type == 2) {
      if (!GetLengthDelimited(&in, &out->object_token)) return false;
    } else if (field == 6 && wire_type == 2) {
      absl::string_view ref;
      if (!GetLengthDelimited(&in, &ref)) return false;
      CallHeaderView::CountedRef counted;
      if (!DecodeCountedRef(ref, &counted)) return false;
      out->counted_refs.push_back(counted);
    } else if (!SkipValue(field, wire_type, &in)) {
      return false;
    }
  }
  return true;
}

size_t CallHeaderSize(absl::string_view method, int64_t timeout_ns, const Metadata& metadata) {
  size_t size = method.empty() ? 0 : BytesFieldSize(method);
  if (timeout_ns != 0) size += 1 + VarintSize(static_cast<uint64_t>(timeout_ns));
  for (const auto& [key, value] : metadata) {
    const size_t inner = MetadataEntrySize(key, value);
    size += 1 + VarintSize(inner) + inner;
  }
  return size;
}

char* WriteCallHeader(absl::string_view method, int64_t timeout_ns, const Metadata& metadata,
                      char* out) {
  if (!method.empty()) out = PutBytes(1, method, out);  // bytes method = 1
  if (timeout_ns != 0) {                                // int64 timeout_ns = 2
    *out++ = static_cast<char>((2 << 3) | 0);
    out = PutVarint(static_cast<uint64_t>(timeout_ns), out);
  }
  for (const auto& [key, value] : metadata) {  // repeated MetadataEntry metadata = 3
    *out++ = static_cast<char>((3 << 3) | 2);
    out = PutVarint(MetadataEntrySize(key, value), out);
    if (!key.empty()) out = PutBytes(1, key, out);
    if (!value.empty()) out = PutBytes(2, value, out);
  }
  return out;
}

size_t ObjectTargetSize(uint64_t object_id, absl::string_view token) {
  return (object_id == 0 ? 0 : 9) + (token.empty() ? 0 : BytesFieldSize(token));
}

char* WriteObjectTarget(uint64_t object_id, absl::string_view token, char* out) {
  if (object_id != 0) {  // fixed64 object_id = 4
    *out++ = static_cast<char>((4 << 3) | 1);
    for (int i = 0; i < 8; ++i) *out++ = static_cast<char>(object_id >> (8 * i));
  }
  if (!token.empty()) out = PutBytes(5, token, out);  // bytes object_token = 5
  return out;
}

void EncodeCallHeader(absl::string_view method, int64_t timeout_ns, const Metadata& metadata,
                      std::string* out) {
  const size_t old_size = out->size();
  out->resize(old_size + CallHeaderSize(method, timeout_ns, metadata));
  WriteCallHeader(method, timeout_ns, metadata, out->data() + old_size);
}

}  // namespace locus::internal
