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
// Thread-safety: thread-safe; everything queued is guarded by mu_.
#ifndef LOCUS_TRANSPORTS_SOCKET_STREAM_WRITER_H_
#define LOCUS_TRANSPORTS_SOCKET_STREAM_WRITER_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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

  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                    absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
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
  size_t queued_bytes() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return out_queue_.size() - out_offset_; }
  void AppendToQueue(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                     size_t skip) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes queued bytes until the socket takes no more. True if the queue
  // is empty afterwards (written, or dropped because the connection failed:
  // the reader sees the error too and delivers OnClosed).
  bool WriteQueuedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
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
  absl::Time last_progress_ ABSL_GUARDED_BY(mu_);  // queue started, or last bytes taken
  bool stall_check_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool corked_output_ ABSL_GUARDED_BY(mu_) = false;  // queued by a corked batch
  bool write_closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace locus::internal

#endif  // LOCUS_TRANSPORTS_SOCKET_STREAM_WRITER_H_
