// The receiving half of a shared-memory connection (shm_connection.h):
// drains the incoming ring, delivers its frames to the sink, polls and
// sleeps on the connection's doorbell, and hands the reader role between
// the connection's reader thread and synchronous callers.
//
// Example (the connection, which owns the reader, its writer and its close
// state):
//   reader_.set_sink(sink);
//   std::thread([&] { reader_.ReadUntilClosed(writer_, close_); ... });  // the reader thread
//   ...
//   reader_.DriveUntil(done, deadline, writer_, close_);  // a synchronous caller
//
// The reader role (reader_role.h) is held by whoever reads the ring and
// feeds the decoder: the reader thread (on the server, handlers run inline
// on it) or a synchronous caller inside DriveUntil, which polls for its own
// reply so that the reply needs no thread wake-up. The role holder also
// flushes output the writer queued (ShmWriter) as the peer frees room.
// Waiting is adaptive: a reader polls for `shm_spin` (only if another core
// can run the peer and the process-wide spin budget allows,
// transports/common/spin_budget.h), then sleeps on the doorbell, the futex
// word of the ring it consumes (shm_layout.h); a writer only rings it when
// the reader sleeps and nobody polls.
//
// File descriptors: a frame whose flags claim some (frame_fds.h) takes the
// next message from the connection's Unix socket (shm_writer.h), which must
// be one byte holding that count with exactly that many descriptors
// attached; anything else (none there, another count, MSG_CTRUNC, more than
// kMaxFdsPerFrame) closes the connection as malformed input, with every
// descriptor received closed. The sender puts the message on the socket
// before the frame in the ring, so an honest peer's is always there.
// Messages no frame claims stay in the socket's buffer (bounded by it, and
// not this process's descriptors) until a claim reads one or the
// connection closes.
//
// Thread-safety: DriveUntil, ReadUntilClosed, AdjustBackgroundReads,
// WakeLocal, SleepOnDoorbell and HoldsRole from any thread; members marked
// ABSL_GUARDED_BY(role_) belong to the role holder.
#ifndef LOCUS_TRANSPORTS_SHM_SHM_READER_H_
#define LOCUS_TRANSPORTS_SHM_SHM_READER_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "locus/frame.h"
#include "locus/transport.h"
#include "transports/common/close_state.h"
#include "transports/common/frame_decoder.h"
#include "transports/common/frame_fds.h"
#include "transports/shm/futex.h"
#include "transports/shm/reader_role.h"
#include "transports/shm/shm_bulk.h"
#include "transports/shm/shm_layout.h"
#include "transports/shm/shm_ring.h"
#include "transports/shm/shm_writer.h"

namespace locus::internal {

class ShmReader final : public FrameDecoderSink {
 public:
  // What a reader needs from the rest of its connection, on its error
  // paths only: closing it.
  class Owner {
   public:
    // Closes the connection (the peer sent or left garbage).
    virtual void Close(const absl::Status& reason) = 0;

   protected:
    ~Owner() = default;
  };

  // Whether room in the outgoing ring ends a SleepOnDoorbell.
  enum class SpaceInterest { kNone, kAnyRoom, kIfQueuedForUs };

  // Upper bound on one sleep on the doorbell: sleepers re-check for
  // closure and deadlines at least this often, whatever the peer does to
  // the futex words.
  static constexpr absl::Duration kMaxSleep = absl::Milliseconds(50);

  // Reads ring `ring` and bulk area `ring` of `region` (mapped, of
  // `geometry`, shm_layout.h); the peer's doorbell is the data_seq of the
  // other ring. Descriptors come over `socket_fd`, the connection's Unix
  // socket (not owned). `owner` outlives the reader.
  ShmReader(char* region, const ShmGeometry& geometry, int ring, int socket_fd,
            const PeerInfo& peer, const TransportOptions& options, Owner* owner);
  ShmReader(const ShmReader&) = delete;
  ShmReader& operator=(const ShmReader&) = delete;

  // Before the first read: where frames go.
  void set_sink(FrameSink* sink) { sink_ = sink; }
  // Before the first read: how long the idle reader thread sleeps before it
  // looks at the ring by itself (kMaxSleep). Tests make it long, so that
  // only the wake-ups under test wake it.
  void set_idle_sleep(absl::Duration sleep) { idle_sleep_ = sleep; }
  // The sink is gone: nothing is delivered to it any more.
  void Detach() { detached_.store(true, std::memory_order_release); }

  // Connection::DriveUntil: takes the reader role (false if it stays taken)
  // and reads until `done()`, `deadline` or closure, flushing `writer`'s
  // queued output meanwhile.
  bool DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline, ShmWriter& writer,
                  const CloseState& close);
  // The reader thread: drains the ring whenever no caller does, polls (with
  // the role) while it may, sleeps on the doorbell otherwise. Returns once
  // `close` says closed (frames that arrived before are delivered).
  void ReadUntilClosed(ShmWriter& writer, const CloseState& close);
  // After ReadUntilClosed, on the reader thread: takes the role for good,
  // so that no caller delivers frames from now on (DriveUntil then fails
  // to take it), and says if the peer left a truncated frame.
  void StopReading();
  // After StopReading: FrameSink::OnClosed(reason), unless detached.
  void DeliverClosed(const absl::Status& reason);

  // Connection::AdjustBackgroundReads. At 0 (a plain client with no
  // asynchronous call outstanding) synchronous callers may leave their
  // polling announcement up (ReleaseRole); when background reads are wanted
  // again, the reader thread wakes, takes the role and, leaving it, the
  // announcement down.
  void AdjustBackgroundReads(int delta);

  // Whether this thread holds the reader role.
  bool HoldsRole() const {
    return role_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }
  // Wakes this side's reader thread if it sleeps (e.g. data arrived for it
  // while a caller held the role and kept producers from waking anyone),
  // and every other sleeper on the doorbell.
  void WakeLocal() {
    in_control_->data_seq.fetch_add(1, std::memory_order_seq_cst);
    FutexWakeAll(&in_control_->data_seq);
  }
  // Sleeps on this side's doorbell (shm_layout.h) until input arrives (if
  // `want_data`), the peer frees room in `writer`'s ring (per `space`), the
  // connection closes, a local wake-up, or `timeout`. Announcing before
  // re-checking (Dekker-style, all seq_cst) means a peer that changes a ring
  // after the check sees the announcement and rings; one that changed it
  // before is caught by the check. Local senders ring after they leave.
  void SleepOnDoorbell(const ShmWriter& writer, const CloseState& close, bool want_data,
                       SpaceInterest space, absl::Duration timeout);

  // Whether the reader thread sleeps because a synchronous caller holds
  // the reader role while nobody wants background reads (it then waits
  // for a local wake-up only).
  bool parked() const { return reader_parked_.load(std::memory_order_seq_cst); }

  // FrameDecoderSink: on the role holder's thread, from Drain through the
  // decoder. A payload in the peer's bulk area is delivered where it lies,
  // then released.
  void OnFrame(Frame& frame) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  void OnOversizeFrame(const FrameHeader& header) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);

 private:
  enum class DrainResult { kData, kEmpty, kClosed };
  // What the reader thread does after giving up the role.
  enum class ReaderNext { kSleep, kWaitForSpace, kLetCallerIn, kStop };

  // How long a reader polls before sleeping (poll_window.h). A caller
  // awaits a reply; the reader thread only while background reads are
  // wanted.
  absl::Duration PollWindow(bool reply_awaited, const ShmWriter& writer) const;
  // After acquiring role_ (see the definition).
  void TookRole() ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Leaves the role; returns whether input is there (see the definition).
  bool ReleaseRole(const ShmWriter& writer, bool may_linger = false) ABSL_UNLOCK_FUNCTION(role_);
  // The reader thread, finding the role taken by a synchronous caller.
  bool ParkWhileCallerReads(uint32_t seen, const CloseState& close);
  // The reader thread, holding the role: drains, flushes, polls.
  ReaderNext ReadWithRole(ShmWriter& writer, const CloseState& close)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Delivers the records sealed so far.
  DrainResult Drain(const CloseState& close) ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Busy-polls the incoming ring for up to `window`.
  bool Poll(absl::Duration window, bool is_caller, const ShmWriter& writer, const CloseState& close)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Takes down this side's polling announcement, if up.
  bool StopPolling(const ShmWriter& writer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Receives the descriptors a frame with `flags` claims into `*fds` (see
  // the file comment); on error closes the connection (input_failed_).
  bool ClaimFds(uint32_t flags, std::vector<OwnedFd>* fds) ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // Closes the connection for malformed input (`why`).
  void FailInput(const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(role_);
  // in_.HasDataHint(), for threads that may not hold the role.
  // Unchecked: the hint is the ring's lock-free part, meant for them.
  bool InputHint() const ABSL_NO_THREAD_SAFETY_ANALYSIS { return in_.HasDataHint(); }

  // Held by whoever reads `in_` and feeds `decoder_`: the reader thread or
  // a driving caller.
  ReaderRole role_;
  ShmRing in_ ABSL_GUARDED_BY(role_);
  // in_'s control block: its words are atomics, for anyone (the doorbell).
  ShmRingControl* const in_control_;
  ShmBulkReader bulk_in_ ABSL_GUARDED_BY(role_);
  FrameDecoder decoder_ ABSL_GUARDED_BY(role_);
  const uint64_t capacity_;  // in_'s
  const int socket_fd_;
  FdsToReceive fds_in_ ABSL_GUARDED_BY(role_);
  Owner* const owner_;
  const std::string peer_address_;  // for messages
  const uint64_t max_receive_message_size_;
  const absl::Duration shm_spin_;
  FrameSink* sink_ = nullptr;          // set before the first read
  std::atomic<bool> detached_{false};  // the wrapper (and maybe the sink) is gone
  // This side's consumer_polling is raised (Poll).
  bool polling_announced_ ABSL_GUARDED_BY(role_) = false;
  bool input_failed_ ABSL_GUARDED_BY(role_) = false;  // the peer sent garbage
  // Set (by a caller leaving DriveUntil) while the announcement stays up
  // with nobody polling; cleared when it comes down. Read by anyone.
  std::atomic<bool> announcement_lingers_{false};
  // The reader thread sleeps in ParkWhileCallerReads.
  std::atomic<bool> reader_parked_{false};
  // How long the idle reader thread sleeps before it looks again by itself
  // (kMaxSleep; tests lengthen it so that only real wake-ups wake it).
  absl::Duration idle_sleep_ = kMaxSleep;
  // Connection::AdjustBackgroundReads' count; connections start at 1.
  std::atomic<int> background_reads_{1};
  // The thread holding the reader role (default id: none).
  std::atomic<std::thread::id> role_thread_{};
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SHM_SHM_READER_H_
