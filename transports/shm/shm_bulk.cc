#include "transports/shm/shm_bulk.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace locus::internal {

absl::Status ShmBulkWriter::Reclaim() {
  const uint64_t released = control_->released.load(std::memory_order_acquire);
  if (released < released_ || released > sent_) {
    return absl::InternalError(absl::StrCat("corrupt shared-memory bulk area: release count ",
                                            released, " is impossible (", sent_,
                                            " payloads sent, ", released_, " released before)"));
  }
  for (; released_ < released; ++released_) in_flight_.pop_front();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<uint64_t>> ShmBulkWriter::Reserve(uint64_t size) {
  if (!Accepts(size)) return std::optional<uint64_t>();
  absl::Status reclaimed = Reclaim();
  if (!reclaimed.ok()) return reclaimed;
  const uint64_t need = ExtentSize(size);
  uint64_t start = 0;
  if (!in_flight_.empty()) {
    const uint64_t tail = in_flight_.front().start;  // oldest live byte
    const uint64_t head = in_flight_.back().end;     // just past the newest
    if (head > tail) {
      // Live bytes are [tail, head): prefer the free bytes below them.
      if (need <= tail) {
        start = 0;
      } else if (head + need <= capacity_) {
        start = head;
      } else {
        return std::optional<uint64_t>();
      }
    } else {
      // Wrapped: live bytes are [tail, capacity) and [0, head).
      if (head + need > tail) return std::optional<uint64_t>();
      start = head;
    }
  }
  return std::optional<uint64_t>(start + kPayloadSkew);
}

void ShmBulkWriter::Commit(uint64_t offset, uint64_t size) {
  const uint64_t start = offset - kPayloadSkew;
  in_flight_.push_back(Extent{start, start + ExtentSize(size)});
  ++sent_;
}

absl::StatusOr<absl::string_view> ShmBulkReader::Resolve(absl::string_view ref_bytes) const {
  ShmPayloadRef ref;
  if (ref_bytes.size() != sizeof(ref)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bulk payload reference of ", ref_bytes.size(), " bytes (expected ", sizeof(ref), ")"));
  }
  std::memcpy(&ref, ref_bytes.data(), sizeof(ref));
  if (capacity_ == 0) {
    return absl::InvalidArgumentError("bulk payload reference on a connection without a bulk area");
  }
  if (ref.length > capacity_ || ref.offset > capacity_ - ref.length ||
      ref.length > UINT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("bulk payload reference [", ref.offset, ", +",
                                                   ref.length, ") is outside the ", capacity_,
                                                   "-byte bulk area"));
  }
  return absl::string_view(data_ + ref.offset, ref.length);
}

void ShmBulkReader::Release() {
  ++released_;
  control_->released.store(released_, std::memory_order_release);
}

}  // namespace locus::internal
