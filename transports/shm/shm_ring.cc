#include "transports/shm/shm_ring.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "internal/copy_bytes.h"
#include "transports/shm/cache_prefetch.h"
#include "transports/shm/futex.h"

namespace locus::internal {

absl::Status ShmRing::FreeSpace(uint64_t* free, uint64_t wanted) const {
  *free = capacity_ - (write_index_ - cached_read_);
  if (*free >= wanted) return absl::OkStatus();
  const uint64_t read = control_->read_index.load(std::memory_order_acquire);
  // The consumer's index only grows and never passes ours.
  if (read < cached_read_ || read > write_index_ || write_index_ - read > capacity_) {
    return absl::InternalError(absl::StrCat("corrupt shared-memory ring: consumer index ", read,
                                            " is impossible (producer index ", write_index_, ")"));
  }
  cached_read_ = read;
  *free = capacity_ - (write_index_ - read);
  return absl::OkStatus();
}

void ShmRing::Append(const char* src, size_t size) {
  if (size == 0) return;  // src may be null (an empty view)
  uint64_t pos = write_index_ & mask_;
  const size_t first = std::min<uint64_t>(size, capacity_ - pos);
  CopyBytes(data_ + pos, src, first);
  if (first < size) CopyBytes(data_, src + first, size - first);  // wrapped
  write_index_ += size;
}

void ShmRing::Publish() {
  // seq_cst: ordered before the load of consumer_sleepers in
  // WakeConsumerIfSleeping (Dekker-style with the consumer's sleep protocol).
  control_->write_index.store(write_index_, std::memory_order_seq_cst);
}

void ShmRing::PrefetchNextWrites(size_t bytes) const {
  const uint64_t known_free = capacity_ - (write_index_ - cached_read_);
  const uint64_t end = write_index_ + std::min<uint64_t>(bytes, known_free);
  const uint64_t first = (write_index_ + kCacheLine - 1) & ~uint64_t{kCacheLine - 1};
  for (uint64_t index = first; index < end; index += kCacheLine) {
    PrefetchForWrite(data_ + (index & mask_));
  }
}

void ShmRing::WakeConsumerIfSleeping() {
  if (control_->consumer_sleepers.load(std::memory_order_seq_cst) != 0 &&
      control_->consumer_polling.load(std::memory_order_seq_cst) == 0) {
    control_->data_seq.fetch_add(1, std::memory_order_seq_cst);
    FutexWakeAll(&control_->data_seq);
  }
}

absl::Status ShmRing::Readable(absl::string_view* first, absl::string_view* second) const {
  uint64_t write = control_->write_index.load(std::memory_order_acquire);
  if (write < last_seen_write_ || write - read_index_ > capacity_) {
    return absl::InternalError(absl::StrCat("corrupt shared-memory ring: producer index ", write,
                                            " is impossible (consumer index ", read_index_, ")"));
  }
  last_seen_write_ = write;
  uint64_t available = write - read_index_;
  uint64_t pos = read_index_ & mask_;
  uint64_t head = std::min(available, capacity_ - pos);
  *first = absl::string_view(data_ + pos, head);
  *second = absl::string_view(data_, available - head);
  return absl::OkStatus();
}

void ShmRing::Consume(size_t size) {
  read_index_ += size;
  control_->read_index.store(read_index_, std::memory_order_seq_cst);
  if (control_->producer_sleepers.load(std::memory_order_seq_cst) != 0) {
    producer_doorbell_->fetch_add(1, std::memory_order_seq_cst);
    FutexWakeAll(producer_doorbell_);
  }
}

}  // namespace locus::internal
