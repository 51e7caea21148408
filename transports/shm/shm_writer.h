// The sending half of a shared-memory connection (shm_connection.h): writes
// each frame into the outgoing ring, or a large payload into the outgoing
// bulk area (shm_bulk.h) with its reference through the ring; queues what
// the ring has no room for, and flushes that queue as the peer frees room.
//
// Example (the connection, which owns the writer, its reader and its close
// state):
//   ShmWriter::Sending sending(&writer_, payload.size(), role_holder);  // takes the lock
//   if (close_.closed()) return close_.ClosedError();
//   return writer_.SendLocked(header, meta, payload, {}, deadline, role_holder, close_);
//   ...
//   writer_.TryFlushPending();  // the reader-role holder, as room frees
//
// Never blocks the thread that holds the connection's reader role (the
// reader thread, which also runs inline handlers and completion callbacks,
// or a driving caller): what does not fit is queued, and the role holder
// flushes it as the peer frees room, because if both sides' readers blocked
// writing to each other's full rings, neither would drain its own. Other
// threads wait (until their deadline) only while more than
// max_send_queue_bytes are queued.
//
// File descriptors (Connection::SendWithFds) cannot go through the rings:
// they go over the Unix socket that set the connection up, one message per
// frame (one byte, the count, with the descriptors attached), sent before
// the frame enters the ring or the queue and under the same lock, so that
// the messages on the socket are in the order of the frames that claim them
// in the ring (docs/wire.md, "File descriptors"). A peer that does not take
// them fills the socket: a sender then waits for room (flushing queued
// output meanwhile, which may be what the peer needs to reach them), until
// its deadline or send_stall_timeout. Hazard: so does a reader-role holder
// (a handler's reply with descriptors), since the kernel must have them
// before the call returns; two sides whose role holders both wait so for
// each other stall until those limits.
//
// Thread-safety: the *Locked functions run under the writer's lock, which
// a Sending holds, on any thread; TryFlushPending and SendStalled are the
// reader-role holder's; the hints (queued_bytes, CanFlush, RoomHint, ...)
// are lock-free, for any thread.
#ifndef LOCUS_TRANSPORTS_SHM_SHM_WRITER_H_
#define LOCUS_TRANSPORTS_SHM_SHM_WRITER_H_

#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "locus/frame.h"
#include "locus/transport.h"
#include "transports/common/close_state.h"
#include "transports/shm/futex.h"
#include "transports/shm/shm_bulk.h"
#include "transports/shm/shm_layout.h"
#include "transports/shm/shm_ring.h"

namespace locus::internal {

class ShmWriter {
 public:
  // What a sender needs from the rest of its connection on its slow paths
  // only, never for a frame that fits: closing it, and waiting for room.
  class Owner {
   public:
    // Closes the connection (a corrupt ring, a peer that stopped reading).
    virtual void Close(const absl::Status& reason) = 0;
    // Sleeps on the connection's doorbell until the peer frees room in the
    // outgoing ring, the connection closes, a local wake-up, or `timeout`.
    virtual void SleepUntilRoom(absl::Duration timeout) = 0;

   protected:
    ~Owner() = default;
  };

  // What TryFlushPending found: nothing (left) queued, a sender busy (it
  // flushes), or output left queued because the ring is full.
  enum class FlushResult { kNothingQueued, kSenderBusy, kRingFull };

  // Writes ring `ring` and bulk area `ring` of `region` (mapped, of
  // `geometry`, shm_layout.h); the connection's doorbell is the data_seq of
  // the other ring, which it consumes. Descriptors go over `socket_fd`, the
  // connection's Unix socket (not owned). `owner` outlives the writer.
  ShmWriter(char* region, const ShmGeometry& geometry, int ring, int socket_fd,
            const PeerInfo& peer, const TransportOptions& options, Owner* owner);
  ShmWriter(const ShmWriter&) = delete;
  ShmWriter& operator=(const ShmWriter&) = delete;

  // A send in progress: holds the writer's lock (mu_) for its lifetime. `role_holder`: this
  // thread holds the reader role; `payload_bytes`: the size of the message
  // sent (see ShmPollWindow). While a sender other than the role holder is
  // here it flushes the queue itself, so the role holder neither waits for
  // nor polls on ring space meanwhile (the role holder sending, an inline
  // handler's reply, need not say so: two atomic operations fewer on a
  // server's reply path). Output such a sender leaves queued (the ring is
  // full) is the reader thread's to flush as room frees: the sender rings
  // the doorbell as it leaves.
  class ABSL_SCOPED_LOCKABLE Sending {
   public:
    Sending(ShmWriter* writer, uint64_t payload_bytes, bool role_holder)
        ABSL_EXCLUSIVE_LOCK_FUNCTION(writer->mu_)
        : writer_(writer), role_holder_(role_holder) {
      writer_->last_sent_payload_.store(payload_bytes, std::memory_order_relaxed);
      if (!role_holder_) writer_->senders_busy_.fetch_add(1, std::memory_order_seq_cst);
      writer_->mu_.Lock();
    }
    ~Sending() ABSL_UNLOCK_FUNCTION() {
      writer_->mu_.Unlock();
      if (role_holder_) return;
      writer_->senders_busy_.fetch_sub(1, std::memory_order_seq_cst);
      // After the count above dropped, so that the reader thread does not
      // leave the flush to this sender.
      if (writer_->pending_bytes_.load(std::memory_order_seq_cst) != 0) writer_->RingOwnDoorbell();
    }
    Sending(const Sending&) = delete;
    Sending& operator=(const Sending&) = delete;

   private:
    ShmWriter* const writer_;
    const bool role_holder_;
  };

  // Writes the frame into the ring, or queues what does not fit (see the
  // file comment); a thread other than the role holder then waits while
  // more than max_send_queue_bytes are queued. `fds` (validated:
  // ValidateFdsToSend; `header` carries their count) go over the socket
  // first; errors about them (RESOURCE_EXHAUSTED, INVALID_ARGUMENT,
  // DEADLINE_EXCEEDED while the socket is full) leave nothing sent.
  absl::Status SendLocked(const FrameHeader& header, absl::string_view meta,
                          absl::string_view payload, absl::Span<const int> fds,
                          absl::Time deadline, bool role_holder, const CloseState& close)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends a frame whose large payload `write_payload` serializes straight
  // into the outgoing bulk area, if the area has room now. Sets `*in_bulk`
  // to false (and sends nothing) if not: the caller then sends the payload
  // through the ring.
  absl::Status SendInBulkLocked(const FrameHeader& header, absl::string_view meta,
                                Connection::PayloadWriter write_payload, absl::Time deadline,
                                bool role_holder, const CloseState& close, bool* in_bulk)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether SendInBulkLocked may take a payload of `payload_bytes` at all.
  bool MayUseBulk(uint64_t payload_bytes) const {
    return payload_bytes >= kMinBulkPayload && bulk_capacity_ != 0;
  }
  // Sends a frame whose payload `write_payload` serializes straight into
  // the outgoing ring, if nothing is queued and the whole frame fits there
  // now in one piece. Sets `*in_ring` to false (and sends nothing) if not:
  // the caller then serializes into a buffer and sends that.
  absl::Status SendInRingLocked(const FrameHeader& header, absl::string_view meta,
                                Connection::PayloadWriter write_payload, bool* in_ring)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // For the reader-role holder: flushes queued output if no sender is busy
  // (a busy sender flushes it itself). Inline: the role holder calls it on
  // every pass, and mostly nothing is queued.
  FlushResult TryFlushPending() ABSL_LOCKS_EXCLUDED(mu_) {
    if (pending_bytes_.load(std::memory_order_acquire) == 0) return FlushResult::kNothingQueued;
    return FlushPendingUnlessBusy();
  }
  // Output queued by the reader-role holder (which never waits for room)
  // must make progress: a peer that stops reading while this side keeps
  // queueing replies would grow the queue without bound. After
  // send_stall_timeout without a byte taken, closes the connection and
  // returns true.
  bool SendStalled();

  // --- hints, lock-free, for any thread ---
  // Bytes queued (not yet in the ring).
  size_t queued_bytes(std::memory_order order) const { return pending_bytes_.load(order); }
  // Output is queued, the peer has freed room for it, and no sender (which
  // would flush it itself) is busy.
  // Unchecked: reads only the ring's lock-free hint (RoomHint) without mu_.
  bool CanFlush() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (pending_bytes_.load(std::memory_order_relaxed) == 0) return false;
    if (senders_busy_.load(std::memory_order_relaxed) != 0) return false;
    return out_.RoomHint();
  }
  // Threads in a Sending other than the role holder.
  bool senders_busy(std::memory_order order) const { return senders_busy_.load(order) != 0; }
  // Payload bytes of the last frame sent.
  uint64_t last_sent_payload() const { return last_sent_payload_.load(std::memory_order_relaxed); }
  // The outgoing ring's RoomHint and control block (for the doorbell sleep).
  // Unchecked: both are the ring's lock-free parts, read without mu_.
  bool RoomHint() const ABSL_NO_THREAD_SAFETY_ANALYSIS { return out_.RoomHint(); }
  ShmRingControl* ring_control() const ABSL_NO_THREAD_SAFETY_ANALYSIS { return out_.control(); }

 private:
  // Makes a whole frame of `frame_bytes` just written to the ring visible
  // and wakes the peer if it sleeps; after a small frame, takes ownership of
  // the lines the next one will use (kPrefetchAheadAfter).
  void PublishFrameLocked(size_t frame_bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // SendLocked's wait while more than max_send_queue_bytes are queued
  // (mu_ is released while sleeping, so that the reader-role holder, which
  // must never block, can still queue and flush).
  absl::Status WaitBelowQueueLimitLocked(absl::Time deadline, const CloseState& close)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends `fds` over the socket in a message of their own, waiting (mu_
  // released) while the socket is full (see the file comment).
  absl::Status SendFdsLocked(absl::Span<const int> fds, absl::Time deadline,
                             const CloseState& close) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Copies as much of `*part` as fits into the outgoing ring.
  absl::Status WriteSome(absl::string_view* part) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves queued bytes into the ring as space allows.
  absl::Status FlushPendingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // TryFlushPending with output queued.
  FlushResult FlushPendingUnlessBusy() ABSL_LOCKS_EXCLUDED(mu_);
  // Wakes the connection's own sleepers (they all sleep on its doorbell).
  void RingOwnDoorbell() {
    own_doorbell_->fetch_add(1, std::memory_order_seq_cst);
    FutexWakeAll(own_doorbell_);
  }

  absl::Mutex mu_;
  ShmRing out_ ABSL_GUARDED_BY(mu_);  // its hints (RoomHint, control) for anyone
  ShmBulkWriter bulk_out_ ABSL_GUARDED_BY(mu_);
  const uint64_t bulk_capacity_;
  std::atomic<uint32_t>* const own_doorbell_;
  const int socket_fd_;
  Owner* const owner_;
  const std::string peer_address_;  // for messages
  const absl::Duration send_stall_timeout_;
  const size_t max_send_queue_bytes_;

  // Output queued while the ring was full, one frame (or its unwritten
  // rest) per entry; the front entry is written from pending_offset_.
  std::deque<std::string> pending_ ABSL_GUARDED_BY(mu_);
  size_t pending_offset_ ABSL_GUARDED_BY(mu_) = 0;
  size_t pending_total_ ABSL_GUARDED_BY(mu_) = 0;  // bytes in pending_
  std::atomic<size_t> pending_bytes_{0};  // pending_total_ - pending_offset_, for hints
  std::atomic<int> senders_busy_{0};  // threads in a Sending, other than the role holder
  std::atomic<uint64_t> last_sent_payload_{0};  // payload bytes of the last frame sent
  // When queued output last moved (or the queue started): see SendStalled.
  std::atomic<int64_t> last_flush_progress_ns_{0};
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SHM_SHM_WRITER_H_
