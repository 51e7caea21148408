#include "transports/shm/shm_ring.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "transports/common/copy_bytes.h"
#include "transports/shm/cache_prefetch.h"
#include "transports/shm/futex.h"

namespace locus::internal {

namespace {

uint64_t AlignRecord(uint64_t index) { return (index + kShmRecordAlign - 1) & ~(kShmRecordAlign - 1); }

}  // namespace

absl::Status ShmRing::FreeSpace(uint64_t* free, uint64_t wanted) const {
  // The end of the room, cached_read_ + capacity_, is a record boundary:
  // the padding after the open record always fits before it.
  const uint64_t header = record_open_ ? 0 : sizeof(ShmRecordHeader);
  const auto room = [&](uint64_t read) {
    const uint64_t raw = capacity_ - (write_index_ - read);
    return raw > header ? raw - header : 0;
  };
  *free = room(cached_read_);
  if (*free >= wanted) return absl::OkStatus();
  const uint64_t read = control_->read_index.load(std::memory_order_acquire);
  // The consumer's index only grows, never passes ours, and stops at
  // record boundaries.
  if (read < cached_read_ || read > write_index_ || write_index_ - read > capacity_ ||
      read % kShmRecordAlign != 0) {
    return absl::InternalError(absl::StrCat("corrupt shared-memory ring: consumer index ", read,
                                            " is impossible (producer index ", write_index_, ")"));
  }
  cached_read_ = read;
  *free = room(read);
  return absl::OkStatus();
}

void ShmRing::Append(const char* src, size_t size) {
  if (size == 0) return;  // src may be null (an empty view)
  OpenRecord();
  uint64_t pos = write_index_ & mask_;
  const size_t first = std::min<uint64_t>(size, capacity_ - pos);
  CopyBytes(data_ + pos, src, first);
  if (first < size) CopyBytes(data_, src + first, size - first);  // wrapped
  write_index_ += size;
}

void ShmRing::Publish() {
  if (!record_open_) return;
  record_open_ = false;
  const uint64_t length = write_index_ - record_start_ - sizeof(ShmRecordHeader);
  if (length == 0) {  // nothing appended: no record
    write_index_ = record_start_;
    return;
  }
  ShmRecordHeader* record = RecordAt(record_start_);
  record->length.store(static_cast<uint32_t>(length), std::memory_order_relaxed);
  record->reserved = 0;
  write_index_ = AlignRecord(write_index_);
  // seq_cst: the record's bytes are visible before the seal (release), and
  // the seal before the load of consumer_sleepers in WakeConsumerIfSleeping
  // (Dekker-style with the consumer's sleep protocol).
  record->seal.store(ShmRecordSeal(record_start_, seal_key_), std::memory_order_seq_cst);
  control_->write_index.store(write_index_, std::memory_order_release);
  published_write_.store(write_index_, std::memory_order_release);
}

void ShmRing::PrefetchNextWrites(size_t bytes) const {
  const uint64_t known_free = capacity_ - (write_index_ - cached_read_);
  const uint64_t end = write_index_ + std::min<uint64_t>(bytes, known_free);
  const uint64_t first = (write_index_ | (kCacheLine - 1)) + 1;
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

absl::Status ShmRing::Readable(absl::string_view* first, absl::string_view* second) {
  if (body_begin_ == body_end_) {
    *first = *second = absl::string_view();
    const ShmRecordHeader* record = RecordAt(read_index_);
    const uint64_t seal = ShmRecordSeal(read_index_, seal_key_);
    if (record->seal.load(std::memory_order_acquire) != seal) {
      // Not sealed (yet): the producer's index tells a record still being
      // written from a corrupt one. The producer stores the index after the
      // seal, so an index past this record means it was sealed (the seal is
      // loaded again after the index); one behind it is merely late.
      const uint64_t write = control_->write_index.load(std::memory_order_acquire);
      if (record->seal.load(std::memory_order_acquire) != seal) {
        if (write <= read_index_) return absl::OkStatus();
        return absl::InternalError(absl::StrCat("corrupt shared-memory ring: producer index ", write,
                                                " but no record sealed at ", read_index_));
      }
    }
    const uint64_t length = record->length.load(std::memory_order_relaxed);
    if (length == 0 || length > capacity_ - sizeof(ShmRecordHeader)) {
      return absl::InternalError(absl::StrCat("corrupt shared-memory ring: record at ", read_index_,
                                              " claims ", length, " bytes (ring of ", capacity_, ")"));
    }
    body_begin_ = read_index_ + sizeof(ShmRecordHeader);
    body_end_ = body_begin_ + length;
  }
  const uint64_t available = body_end_ - body_begin_;
  const uint64_t pos = body_begin_ & mask_;
  const uint64_t head = std::min(available, capacity_ - pos);
  *first = absl::string_view(data_ + pos, head);
  *second = absl::string_view(data_, available - head);
  return absl::OkStatus();
}

void ShmRing::Consume(size_t size) {
  body_begin_ += size;
  if (body_begin_ != body_end_ || size == 0) return;
  read_index_ = AlignRecord(body_end_);
}

void ShmRing::Release() {
  if (published_read_.load(std::memory_order_relaxed) == read_index_) return;
  published_read_.store(read_index_, std::memory_order_release);
  control_->read_index.store(read_index_, std::memory_order_seq_cst);
  if (control_->producer_sleepers.load(std::memory_order_seq_cst) != 0) {
    producer_doorbell_->fetch_add(1, std::memory_order_seq_cst);
    FutexWakeAll(producer_doorbell_);
  }
}

}  // namespace locus::internal
