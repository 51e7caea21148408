// A single-producer single-consumer byte ring for variable-size messages, in
// memory that two processes may share (memfd + mmap). Used by the raw
// shared-memory ping-pong baseline of locus-bench and by the ring micro
// benchmark. Not the Locus shm transport (which does not exist yet).
//
// Layout: RingControl (three cache lines) followed by `capacity` data bytes
// (a power of two). Each message is an 8-byte length then the payload, padded
// to 8 bytes; a message may wrap around the end of the data area.
//
// Signalling: by default the producer publishes `tail` (its own cache line)
// and the consumer polls it, then reads the message: two cross-core
// transfers one after the other. `sealed` rings instead store the message's
// 8-byte header last, with a tag that depends on its position, and the
// consumer polls the header where the next message starts: the line it
// watches brings the start of the message with the signal (the structure
// of Locus's shm rings since layout v4). Not for untrusted peers.
//
// Waiting: Pop callers either spin, or spin for a while and then sleep on a
// futex (`seq`, bumped by every push when a consumer announced it sleeps).
//
// Example:
//   SpscRing ring(control, data, 1 << 20);
//   ring.TryPush(buf, 64);                 // producer
//   int64_t n = ring.TryPop(out, sizeof out);  // consumer: -1 if empty
#ifndef LOCUS_BENCH_HARNESS_SPSC_RING_H_
#define LOCUS_BENCH_HARNESS_SPSC_RING_H_

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace locus_bench {

struct RingControl {
  alignas(64) std::atomic<uint64_t> head;  // consumer position (bytes); written by the consumer
  alignas(64) std::atomic<uint64_t> tail;  // producer position; written by the producer
  std::atomic<uint32_t> seq;               // futex word: bumped on push while a consumer sleeps
  alignas(64) std::atomic<uint32_t> sleeping;  // consumer announces it will sleep
};
static_assert(sizeof(RingControl) == 192, "three cache lines");

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

inline long FutexWait(std::atomic<uint32_t>* word, uint32_t expected, long timeout_ns) {
  struct timespec ts = {timeout_ns / 1000000000, timeout_ns % 1000000000};
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}
inline long FutexWake(std::atomic<uint32_t>* word) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

class SpscRing {
 public:
  static constexpr size_t kHeader = 8;

  // `capacity` must be a power of two, at least 64.
  SpscRing(RingControl* control, uint8_t* data, size_t capacity, bool sealed = false)
      : c_(control), data_(data), cap_(capacity), mask_(capacity - 1), sealed_(sealed) {}

  // Space a message of `len` bytes takes in the ring.
  static size_t Footprint(size_t len) { return kHeader + ((len + 7) & ~size_t{7}); }

  // Producer. Returns false if the ring lacks room now.
  bool TryPush(const void* msg, uint32_t len) {
    size_t need = Footprint(len);
    uint64_t tail = c_->tail.load(std::memory_order_relaxed);
    if (tail + need - cached_head_ > cap_) {
      cached_head_ = c_->head.load(std::memory_order_acquire);
      if (tail + need - cached_head_ > cap_) return false;
    }
    if (sealed_) {
      CopyIn(tail + kHeader, msg, len);
      __atomic_store_n(HeaderAt(tail), SealedHeader(tail, len), __ATOMIC_RELEASE);
      c_->tail.store(tail + need, std::memory_order_relaxed);  // the producer's own bookkeeping
      return true;
    }
    uint64_t header = len;
    std::memcpy(data_ + (tail & mask_), &header, kHeader);  // 8-aligned: never wraps
    CopyIn(tail + kHeader, msg, len);
    c_->tail.store(tail + need, std::memory_order_release);
    return true;
  }

  // After a push, for consumers that may sleep: wakes one if it sleeps.
  // The fence orders the tail store before the `sleeping` load (Dekker with
  // the consumer's store of `sleeping` and load of `tail`).
  void NotifyConsumer() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (c_->sleeping.load(std::memory_order_relaxed) != 0) {
      c_->seq.fetch_add(1, std::memory_order_seq_cst);
      FutexWake(&c_->seq);
    }
  }

  // Consumer. Returns the message length (copied into `out`, which must hold
  // it), or -1 if the ring is empty.
  int64_t TryPop(void* out, size_t out_size) {
    uint64_t head = c_->head.load(std::memory_order_relaxed);
    if (sealed_) {
      const uint64_t header = __atomic_load_n(HeaderAt(head), __ATOMIC_ACQUIRE);
      if ((header >> 32) != Tag(head)) return -1;
      uint64_t len = header & 0xffffffffu;
      if (len > out_size) len = out_size;
      CopyOut(head + kHeader, out, len);
      c_->head.store(head + Footprint(len), std::memory_order_release);
      return static_cast<int64_t>(len);
    }
    if (head == cached_tail_) {
      cached_tail_ = c_->tail.load(std::memory_order_acquire);
      if (head == cached_tail_) return -1;
    }
    uint64_t len;
    std::memcpy(&len, data_ + (head & mask_), kHeader);
    if (len > out_size) len = out_size;  // caller error; truncate rather than overrun
    CopyOut(head + kHeader, out, len);
    c_->head.store(head + Footprint(len), std::memory_order_release);
    return static_cast<int64_t>(len);
  }

  bool Empty() {
    const uint64_t head = c_->head.load(std::memory_order_relaxed);
    if (sealed_) return (__atomic_load_n(HeaderAt(head), __ATOMIC_ACQUIRE) >> 32) != Tag(head);
    return head == c_->tail.load(std::memory_order_acquire);
  }

  // Consumer: blocks until a message is available. spin_ns = -1: spin only;
  // otherwise spin for spin_ns, then sleep on the futex. Returns false if
  // `abort` became true.
  bool WaitNonEmpty(int64_t spin_ns, const std::atomic<bool>& abort, uint64_t (*now_ns)()) {
    if (!Empty()) return true;
    uint64_t spin_until = spin_ns < 0 ? UINT64_MAX : now_ns() + static_cast<uint64_t>(spin_ns);
    for (uint32_t i = 1;; ++i) {
      if (!Empty()) return true;
      CpuRelax();
      if ((i & 63) == 0) {
        if (abort.load(std::memory_order_relaxed)) return false;
        if (spin_ns >= 0 && now_ns() >= spin_until) break;
      }
    }
    for (;;) {
      uint32_t s = c_->seq.load(std::memory_order_seq_cst);
      c_->sleeping.store(1, std::memory_order_seq_cst);
      if (!Empty()) {
        c_->sleeping.store(0, std::memory_order_relaxed);
        return true;
      }
      FutexWait(&c_->seq, s, 100000000);  // 100 ms: re-check `abort`
      c_->sleeping.store(0, std::memory_order_relaxed);  // only the consumer clears it
      if (!Empty()) return true;
      if (abort.load(std::memory_order_relaxed)) return false;
    }
  }

 private:
  void CopyIn(uint64_t pos, const void* src, size_t len) {
    size_t off = pos & mask_;
    size_t first = len < cap_ - off ? len : cap_ - off;
    std::memcpy(data_ + off, src, first);
    if (first < len) std::memcpy(data_, static_cast<const uint8_t*>(src) + first, len - first);
  }
  void CopyOut(uint64_t pos, void* dst, size_t len) {
    size_t off = pos & mask_;
    size_t first = len < cap_ - off ? len : cap_ - off;
    std::memcpy(dst, data_ + off, first);
    if (first < len) std::memcpy(static_cast<uint8_t*>(dst) + first, data_, len - first);
  }

  uint64_t* HeaderAt(uint64_t pos) const { return reinterpret_cast<uint64_t*>(data_ + (pos & mask_)); }
  // Differs from lap to lap at one position (it repeats every 2^35 bytes of
  // traffic, far beyond a case's run), and from the zeroes of a fresh ring.
  static uint64_t Tag(uint64_t pos) { return static_cast<uint32_t>((pos >> 3) + 1); }
  static uint64_t SealedHeader(uint64_t pos, uint32_t len) { return Tag(pos) << 32 | len; }

  RingControl* c_;
  uint8_t* data_;
  size_t cap_;
  size_t mask_;
  bool sealed_;
  uint64_t cached_head_ = 0;  // producer's view of head
  uint64_t cached_tail_ = 0;  // consumer's view of tail
};

}  // namespace locus_bench

#endif  // LOCUS_BENCH_HARNESS_SPSC_RING_H_
