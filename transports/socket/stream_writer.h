// The sending half of a stream-socket connection (stream_connection.h):
// writes each frame with one sendmsg from the calling thread; queues what
// the socket does not take at once, for the event loop to flush on EPOLLOUT,
// so that a sender never blocks mid-frame; closes the connection when the
// peer stops taking queued bytes (send_stall_timeout).
//
// Example (the connection, which owns the writer):
//   absl::Status sent = writer_.Send(header, meta, payload, deadline);
//   ...
//   writer_.FlushQueue();  // the loop, on EPOLLOUT
//
// Corking. While a thread delivers the frames of one read, the frames it
// sends on the same connection (inline handlers' replies, calls made from
// completion callbacks) are queued and written together when the batch
// ends: one system call for a batch of pipelined calls instead of one per
// call. Frames above kCorkedFrameMaxBytes, or a queue that would grow past
// kCorkedQueueMaxBytes, are written at once as before. The reader decides
// which reads to cork (Cork) and ends the batch (FlushCorkedOutput).
//
// Send blocks (until its deadline) only when more than max_send_queue_bytes
// are queued, and never on the loop thread.
//
// File descriptors (a Unix socket's frames, Connection::SendWithFds) go
// with the first byte of their frame: a frame that carries them is never
// held back by a cork, and when it must wait behind queued bytes it waits
// in the queue with duplicates of its descriptors attached to its first
// byte. Writing the queue stops before such a byte and sends it (and what
// follows, up to the next frame with descriptors) in a sendmsg of its own
// with the descriptors, so that they can never arrive with another frame.
// A sender other than the loop thread also waits while more than
// kMaxQueuedFds duplicates are queued.
//
// Thread-safety: thread-safe; everything queued is guarded by mu_.
#ifndef LOCUS_TRANSPORTS_SOCKET_STREAM_WRITER_H_
#define LOCUS_TRANSPORTS_SOCKET_STREAM_WRITER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "locus/fd.h"
#include "locus/frame.h"
#include "locus/transport.h"
#include "transports/common/close_state.h"
#include "transports/socket/event_loop.h"

namespace locus::internal {

class StreamWriter {
 public:
  // What the writer needs from the rest of its connection, when the socket
  // is full or the connection fails only (never for a frame the socket
  // takes at once). Neither is called with mu_ held.
  class Owner {
   public:
    // Closes the connection (a write failed, the peer stopped reading).
    virtual void Close(const absl::Status& reason) = 0;
    // want_write() changed: the loop's interest in EPOLLOUT must follow.
    virtual void UpdateInterest() = 0;

   protected:
    ~Owner() = default;
  };

  // Frames and queues a corked batch may hold back (see the file comment).
  static constexpr size_t kCorkedFrameMaxBytes = 16 * 1024;
  static constexpr size_t kCorkedQueueMaxBytes = 256 * 1024;
  // Duplicated descriptors queued above which senders other than the loop
  // thread wait (their frames are small: the byte limit would not stop them
  // from exhausting the process's descriptors).
  static constexpr size_t kMaxQueuedFds = 4 * kMaxFdsPerFrame;

  // Holds back this thread's frames on `writer` while it lives, if `cork`
  // (a thread delivering one read; see the file comment). Nests: a
  // callback may drive another connection meanwhile.
  class Cork {
   public:
    Cork(const StreamWriter& writer, bool cork) : outer_(corked_) {
      if (cork) corked_ = &writer;
    }
    ~Cork() { corked_ = outer_; }
    Cork(const Cork&) = delete;
    Cork& operator=(const Cork&) = delete;

   private:
    const StreamWriter* const outer_;
  };

  // `fd`: the connected socket (not owned). `close` and `owner` outlive the
  // writer.
  StreamWriter(int fd, const PeerInfo& peer, const TransportOptions& options,
               const CloseState& close, Owner* owner);
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;

  // At creation, for the stall timer: `self` shares ownership of the
  // connection this writer belongs to.
  void SetSelf(std::weak_ptr<StreamWriter> self) { weak_self_ = std::move(self); }
  // At Start: the loop that flushes the queue, on whose thread Send never
  // blocks. Before, sends only queue.
  void SetLoop(EventLoop* loop) { loop_ = loop; }

  // `fds` (validated: ValidateFdsToSend; empty for a plain frame) go with
  // the frame's first byte; `header` already carries their count. Errors
  // as Connection::SendWithFds: with nothing sent, RESOURCE_EXHAUSTED when
  // the kernel refuses more descriptors in flight or none can be
  // duplicated, INVALID_ARGUMENT when one was closed meanwhile.
  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                    absl::Span<const int> fds, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends a corked batch: writes what it queued.
  void FlushCorkedOutput() ABSL_LOCKS_EXCLUDED(mu_);
  // The loop, on EPOLLOUT: writes the queue.
  void FlushQueue() ABSL_LOCKS_EXCLUDED(mu_);
  // Connection::Close: frames sent before closing go out first, as far as
  // the socket takes them without waiting (e.g. a rejection queued by a
  // corked batch); then nothing more is written.
  void CloseForWriting() ABSL_LOCKS_EXCLUDED(mu_);
  // OnClosed is being delivered: nothing more is written.
  void MarkClosed() ABSL_LOCKS_EXCLUDED(mu_);

  bool HasQueuedOutput() const ABSL_LOCKS_EXCLUDED(mu_);
  // The queue waits for EPOLLOUT.
  bool want_write() const { return want_write_.load(); }

 private:
  // Descriptors waiting in the queue for the byte at `at` (a position in
  // queue_pos_'s count), their frame's first.
  struct Attachment {
    uint64_t at;
    std::vector<OwnedFd> fds;  // duplicates, closed once the kernel has them
  };

  size_t queued_bytes() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return out_queue_.size() - out_offset_; }
  // Queues the frame from byte `skip` on; `fds` (duplicates, only with
  // skip 0) go with its first byte.
  void AppendToQueue(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                     size_t skip, std::vector<OwnedFd> fds = {}) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes queued bytes until the socket takes no more. True if the queue
  // is empty afterwards (written, or dropped because the connection failed:
  // the reader sees the error too and delivers OnClosed, or, for a failure
  // to pass descriptors, CloseLater closes it).
  bool WriteQueuedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Empties the queue, closing the queued descriptors.
  void DropQueueLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closes the connection from a timer thread: for failures found with mu_
  // held, when Owner::Close (which takes mu_) cannot be called.
  void CloseLater(const absl::Status& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Asks for EPOLLOUT (mu_ is released meanwhile, for Owner::UpdateInterest).
  void ArmWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queued output must make progress (see the definition).
  void ScheduleStallCheck(absl::Time when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CheckStall() ABSL_LOCKS_EXCLUDED(mu_);
  // Gives up on a peer that stopped reading, and says why.
  void CloseStalled(const absl::Status& stalled) ABSL_LOCKS_EXCLUDED(mu_);

  // The writer whose frames this thread holds back (Cork), if any.
  static inline thread_local const StreamWriter* corked_ = nullptr;

  const int fd_;
  const std::string peer_address_;  // for messages
  const absl::Duration send_stall_timeout_;
  const size_t max_send_queue_bytes_;
  const CloseState& close_;  // for the reason, when closed
  Owner* const owner_;
  EventLoop* loop_ = nullptr;                // SetLoop
  std::weak_ptr<StreamWriter> weak_self_;  // SetSelf; for timers

  std::atomic<bool> want_write_{false};
  mutable absl::Mutex mu_;
  std::string out_queue_ ABSL_GUARDED_BY(mu_);
  size_t out_offset_ ABSL_GUARDED_BY(mu_) = 0;
  // Bytes ever written from the queue: the position of out_queue_[out_offset_].
  uint64_t queue_pos_ ABSL_GUARDED_BY(mu_) = 0;
  // In position order, each within the queued bytes.
  std::deque<Attachment> attachments_ ABSL_GUARDED_BY(mu_);
  size_t queued_fds_ ABSL_GUARDED_BY(mu_) = 0;  // descriptors in attachments_
  absl::Time last_progress_ ABSL_GUARDED_BY(mu_);  // queue started, or last bytes taken
  bool stall_check_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool corked_output_ ABSL_GUARDED_BY(mu_) = false;  // queued by a corked batch
  bool write_closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SOCKET_STREAM_WRITER_H_
