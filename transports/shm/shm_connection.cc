#include "transports/shm/shm_connection.h"

#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "transports/common/copy_bytes.h"
#include "transports/common/frame_decoder.h"
#include "transports/common/send_stall.h"
#include "transports/common/spin_budget.h"
#include "transports/shm/cache_prefetch.h"
#include "transports/shm/futex.h"
#include "transports/shm/poll_window.h"
#include "transports/shm/reader_role.h"
#include "transports/shm/shm_bulk.h"
#include "transports/shm/shm_layout.h"
#include "transports/shm/shm_ring.h"
#include "transports/socket/event_loop.h"

namespace locus::internal {
namespace {

// Upper bound on one futex sleep: sleepers re-check for closure and
// deadlines at least this often, whatever the peer does to the futex words.
constexpr absl::Duration kMaxSleep = absl::Milliseconds(50);

// How much of the outgoing ring a sender takes ownership of ahead of its
// next frame (ShmRing::PrefetchNextWrites): a small frame or two. Only after
// a small frame (kPrefetchAheadAfter): a large one costs its copy, and the
// consumer streams through it with the hardware prefetcher reading ahead,
// into the lines taking ownership would steal (4 KiB round trips: +4%).
constexpr size_t kPrefetchAheadBytes = 256;
constexpr size_t kPrefetchAheadAfter = 512;

}  // namespace

absl::StatusOr<std::unique_ptr<ShmMapping>> ShmMapping::Map(int fd, size_t size) {
  void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    return absl::InternalError(absl::StrCat("mmap of shared-memory region failed: ", std::strerror(errno)));
  }
  return std::unique_ptr<ShmMapping>(new ShmMapping(static_cast<char*>(data), size));
}

ShmMapping::~ShmMapping() { munmap(data_, size_); }

class ShmConnection::Impl final : public FdHandler,
                                  public FrameDecoderSink,
                                  public std::enable_shared_from_this<Impl> {
 public:
  // `ring_capacity`, `bulk_capacity` and `seal_key` were validated at
  // setup and are never re-read from shared memory.
  Impl(int socket_fd, std::unique_ptr<ShmMapping> mapping, bool client_side, uint64_t ring_capacity,
       uint64_t bulk_capacity, uint64_t seal_key, PeerInfo peer, const TransportOptions& options)
      : fd_(socket_fd),
        mapping_(std::move(mapping)),
        header_(reinterpret_cast<ShmRegionHeader*>(mapping_->data())),
        capacity_(ring_capacity),
        bulk_capacity_(bulk_capacity),
        // Our doorbell is the data_seq of the ring we consume; the peer's is
        // that of the ring it consumes (shm_layout.h).
        out_(&header_->rings[client_side ? 0 : 1],
             mapping_->data() + kShmHeaderSize + (client_side ? 0 : capacity_), capacity_,
             &header_->rings[client_side ? 1 : 0].data_seq, seal_key),
        in_(&header_->rings[client_side ? 1 : 0],
            mapping_->data() + kShmHeaderSize + (client_side ? capacity_ : 0), capacity_,
            &header_->rings[client_side ? 0 : 1].data_seq, seal_key),
        bulk_out_(&header_->bulk[client_side ? 0 : 1],
                  BulkArea(client_side ? 0 : 1, bulk_capacity), bulk_capacity),
        bulk_in_(&header_->bulk[client_side ? 1 : 0], BulkArea(client_side ? 1 : 0, bulk_capacity),
                 bulk_capacity),
        peer_(std::move(peer)),
        options_(options),
        decoder_(options.max_meta_size, options.max_receive_message_size, kFlagPayloadInBulk) {}

  ~Impl() override { close(fd_); }

  const PeerInfo& peer() const { return peer_; }

  // Before Start() only.
  void SetReaderSleepForTesting(absl::Duration sleep) { reader_sleep_ = sleep; }
  bool ReaderParkedForTesting() const { return reader_parked_.load(std::memory_order_seq_cst); }
  bool HasQueuedOutput() const { return pending_bytes_.load(std::memory_order_acquire) != 0; }

  void Start(FrameSink* sink) {
    sink_ = sink;
    loop_ = EventLoopPool::Get().Next();
    // Only hang-ups matter on the socket now: they are how the peer's death
    // is noticed, whatever state its rings are in.
    absl::Status added = loop_->Add(fd_, EPOLLRDHUP, shared_from_this());
    if (!added.ok()) Close(absl::UnavailableError(added.message()));
    reader_ = std::thread([self = shared_from_this()] { self->ReaderLoop(); });
  }

  // After this the sink is never called again. From another thread it
  // joins the reader (which delivers OnClosed first); from the reader thread
  // itself (the sink released its last reference inside a callback) it
  // detaches it, and the reader stops calling the sink.
  void Shutdown() {
    Close(absl::CancelledError("connection destroyed"));
    if (loop_ != nullptr) loop_->Remove(fd_);
    if (reader_.joinable()) {
      if (reader_.get_id() == std::this_thread::get_id()) {
        detached_.store(true, std::memory_order_release);
        reader_.detach();
      } else {
        reader_.join();
      }
    }
    detached_.store(true, std::memory_order_release);
  }

  void Close(const absl::Status& reason) {
    {
      absl::MutexLock lock(&close_mu_);
      if (closing_) return;
      closing_ = true;
      close_reason_ = reason;
    }
    closed_.store(true, std::memory_order_seq_cst);
    shutdown(fd_, SHUT_RDWR);  // the peer notices through its socket
    // Wake our own sleepers (on our ring words) so they see the closure.
    WakeLocalReader();  // everyone here sleeps on our doorbell
  }

  // FdHandler: the socket hung up or failed: the peer is gone.
  void OnEvents(uint32_t events) override {
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      Close(absl::UnavailableError("peer closed the connection"));
    }
  }

  // Writes the frame into the outgoing ring. Never blocks the thread that
  // holds the reader role (the reader thread, which also runs inline
  // handlers and completion callbacks, or a driving caller): what does not
  // fit is queued and flushed as the peer frees space, because if both
  // sides' readers blocked writing to each other's full rings, neither would
  // drain its own. Other threads wait (until their deadline) only while more
  // than max_send_queue_bytes are queued.
  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                    absl::Time deadline) {
    return Sending(payload.size(), [&](bool reader) ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_) {
      return SendLocked(header, meta, payload, deadline, reader);
    });
  }

  // Sends a frame whose large payload `write_payload` serializes straight
  // into the outgoing bulk area (shm_bulk.h), if the area has room now.
  // Sets `*in_bulk` to false (and sends nothing) if not: the caller then
  // sends the payload through the ring.
  absl::Status SendInBulk(const FrameHeader& header, absl::string_view meta,
                          Connection::PayloadWriter write_payload, absl::Time deadline,
                          bool* in_bulk) {
    *in_bulk = false;
    if (header.payload_length < kMinBulkPayload || bulk_capacity_ == 0) return absl::OkStatus();
    return Sending(header.payload_length, [&](bool reader) ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_) {
      // Reserve says nullopt for a payload the area cannot hold at all.
      absl::StatusOr<std::optional<uint64_t>> at = bulk_out_.Reserve(header.payload_length);
      if (!at.ok()) {
        LOCUS_LOG(ERROR) << "closing shared-memory connection to " << peer_.remote_address << ": "
                         << at.status().message();
        Close(at.status());
        return absl::UnavailableError(at.status().message());
      }
      if (!at->has_value()) return absl::OkStatus();  // no room now: the ring takes it
      *in_bulk = true;
      if (!write_payload(bulk_out_.data() + **at)) {
        return absl::InternalError("could not encode the message to send");
      }
      bulk_out_.Commit(**at, header.payload_length);
      const ShmPayloadRef ref{**at, header.payload_length};
      FrameHeader ring_header = header;
      ring_header.flags |= kFlagPayloadInBulk;
      ring_header.payload_length = sizeof(ref);
      return SendLocked(ring_header, meta,
                        absl::string_view(reinterpret_cast<const char*>(&ref), sizeof(ref)),
                        deadline, reader);
    });
  }

  // Sends a frame whose payload `write_payload` serializes straight into
  // the outgoing ring, if nothing is queued and the whole frame fits there
  // now in one piece. Sets `*in_ring` to false (and sends nothing) if not:
  // the caller then serializes into a buffer and sends that.
  absl::Status SendInRing(const FrameHeader& header, absl::string_view meta,
                          Connection::PayloadWriter write_payload, bool* in_ring) {
    *in_ring = false;
    return Sending(header.payload_length, [&](bool) ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_) {
      absl::Status flushed = FlushPendingLocked();
      if (!flushed.ok()) return flushed;
      if (!pending_.empty()) return absl::OkStatus();  // frames keep their order
      const size_t total = sizeof(header) + meta.size() + header.payload_length;
      uint64_t free = 0;
      if (!out_.FreeSpace(&free, total).ok() || free < total) return absl::OkStatus();
      char* run = out_.ContiguousRun(total);
      if (run == nullptr) return absl::OkStatus();  // wraps: rare, the buffer path takes it
      *in_ring = true;
      // Written but not published until complete: a failed writer leaves
      // nothing for the peer to see.
      if (!write_payload(run + sizeof(header) + meta.size())) {
        return absl::InternalError("could not encode the message to send");
      }
      std::memcpy(run, &header, sizeof(header));
      if (!meta.empty()) std::memcpy(run + sizeof(header), meta.data(), meta.size());
      out_.Advance(total);
      PublishFrameLocked(total);
      return absl::OkStatus();
    });
  }

  // Runs `send_locked(reader)` under send_mu_ unless the connection is
  // closed (UNAVAILABLE), where `reader` says whether this thread holds the
  // reader role; `payload_bytes` is the size of the message sent (see
  // PollWindow).
  template <typename SendLockedFn>
  absl::Status Sending(uint64_t payload_bytes, SendLockedFn&& send_locked) {
    last_sent_payload_.store(payload_bytes, std::memory_order_relaxed);
    const bool reader = role_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id();
    // While a sender is here it flushes the queue itself: the reader-role
    // holder neither waits for nor polls on ring space meanwhile. The role
    // holder sending (an inline handler's reply) is that holder, so it need
    // not say so: two atomic operations fewer on a server's reply path.
    if (!reader) senders_busy_.fetch_add(1, std::memory_order_seq_cst);
    absl::Status status;
    {
      absl::MutexLock lock(&send_mu_);
      status = closed_.load(std::memory_order_acquire)
                   ? absl::UnavailableError(
                         absl::StrCat("connection closed: ", CloseReason().message()))
                   : send_locked(reader);
    }
    if (!reader) senders_busy_.fetch_sub(1, std::memory_order_seq_cst);
    // Output left queued (the ring is full) is the reader thread's to flush
    // as room frees: make sure it looks (after the count above dropped, so
    // that it does not leave it to this sender).
    if (!reader && pending_bytes_.load(std::memory_order_seq_cst) != 0) WakeLocalReader();
    return status;
  }

  // Makes a whole frame of `frame_bytes` just written to the ring visible
  // and wakes the peer if it sleeps; after a small frame, takes ownership of
  // the lines the next one will use (kPrefetchAheadAfter).
  void PublishFrameLocked(size_t frame_bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_) {
    out_.Publish();
    out_.WakeConsumerIfSleeping();
    if (frame_bytes <= kPrefetchAheadAfter) out_.PrefetchNextWrites(kPrefetchAheadBytes);
  }

  absl::Status SendLocked(const FrameHeader& header, absl::string_view meta,
                          absl::string_view payload, absl::Time deadline, bool reader)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_) {
    absl::string_view parts[3] = {
        absl::string_view(reinterpret_cast<const char*>(&header), sizeof(header)), meta, payload};
    absl::Status flushed = FlushPendingLocked();
    if (!flushed.ok()) return flushed;
    if (pending_.empty()) {
      // The common case: the whole frame fits and is published at once, so
      // the reader never sees (and wakes up for) a partial frame.
      uint64_t free = 0;
      const size_t total = parts[0].size() + parts[1].size() + parts[2].size();
      if (out_.FreeSpace(&free, total).ok() && free >= total) {
        for (absl::string_view part : parts) out_.Append(part.data(), part.size());
        PublishFrameLocked(total);
        return absl::OkStatus();
      }
      // As much as fits now, in order: once a part is cut short, the later
      // ones wait in the queue behind its rest. (Writing on would let a
      // later part take room the consumer freed meanwhile, ahead of the
      // rest of an earlier one: a torn frame.)
      for (absl::string_view& part : parts) {
        absl::Status wrote = WriteSome(&part);
        if (!wrote.ok()) return wrote;
        if (!part.empty()) break;
      }
    }
    const size_t left = parts[0].size() + parts[1].size() + parts[2].size();
    out_.WakeConsumerIfSleeping();
    if (left == 0) return absl::OkStatus();
    // One queue entry per frame: entries are written out and dropped from
    // the front, so a long queue never moves bytes already queued.
    if (pending_.empty()) last_flush_progress_ns_.store(absl::GetCurrentTimeNanos(), std::memory_order_release);
    std::string& entry = pending_.emplace_back();
    entry.reserve(left);
    for (absl::string_view part : parts) AppendBytes(&entry, part.data(), part.size());
    pending_total_ += left;
    pending_bytes_.store(pending_total_ - pending_offset_, std::memory_order_release);
    if (reader) return absl::OkStatus();
    // Not the reader: wait for room below the queue limit.
    // send_mu_ is released while sleeping, so that the reader-role holder
    // (which must never block) can still queue and flush.
    const absl::Time stall_deadline = absl::Now() + options_.send_stall_timeout;
    while (pending_total_ - pending_offset_ > options_.max_send_queue_bytes) {
      if (closed_.load(std::memory_order_acquire)) return absl::UnavailableError("connection closed");
      absl::Time now = absl::Now();
      if (now >= stall_deadline) {
        // The frame is queued and cannot be taken back: the connection is done.
        const absl::Status stalled = PeerStoppedReadingError(
            peer_.remote_address, pending_total_ - pending_offset_, options_.send_stall_timeout);
        LOCUS_LOG(WARNING) << "closing shared-memory connection: " << stalled.message();
        Close(stalled);
        return stalled;
      }
      if (now >= deadline) return absl::DeadlineExceededError("deadline passed while the peer was not reading");
      send_mu_.Unlock();
      SleepOnDoorbell(/*want_data=*/false, SpaceInterest::kAnyRoom,
                      std::min(std::min(deadline, stall_deadline) - now, kMaxSleep));
      send_mu_.Lock();
      absl::Status flushed = FlushPendingLocked();
      if (!flushed.ok()) return flushed;
    }
    return absl::OkStatus();
  }

  bool DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
    SpinBudget& budget = SpinBudget::Get();
    // Announced while driving: the reader thread then stops polling with
    // the role (within about a microsecond) and leaves the spin budget to
    // this caller.
    budget.AnnounceCaller();
    if (!role_.TryAcquire() && !role_.AcquireWithin(absl::Microseconds(200))) {
      budget.WithdrawCaller();
      return false;
    }
    TookRole();
    const bool has_deadline = deadline != absl::InfiniteFuture();
    // Clock arithmetic in nanoseconds: Abseil's Time - Time is an
    // out-of-line call, and this loop runs twice per call.
    const int64_t deadline_ns = has_deadline ? absl::ToUnixNanos(deadline) : 0;
    while (!done() && !closed_.load(std::memory_order_acquire)) {
      const FlushResult flushed = TryFlushPending();
      if (Drain() == DrainResult::kData) continue;
      absl::Duration window = PollWindow(/*reply_awaited=*/true);
      if (has_deadline) {
        const int64_t now_ns = absl::GetCurrentTimeNanos();
        if (now_ns >= deadline_ns) break;
        window = std::min(window, absl::Nanoseconds(deadline_ns - now_ns));
      }
      if (Poll(window, /*is_caller=*/true)) continue;
      absl::Duration sleep = kMaxSleep;
      if (has_deadline) {
        const absl::Time now = absl::Now();
        if (now >= deadline) break;
        sleep = std::min(sleep, deadline - now);
      }
      // If our request is still queued, room in the ring wakes us too.
      SleepOnDoorbell(/*want_data=*/true,
                      flushed == FlushResult::kRingFull ? SpaceInterest::kAnyRoom
                                                        : SpaceInterest::kNone,
                      sleep);
    }
    budget.WithdrawCaller();
    const bool input_left = ReleaseRole(/*may_linger=*/true);
    // While this caller held the role, producers did not wake anyone: hand
    // whatever arrived meanwhile (for other calls) to the reader thread.
    if (input_left || pending_bytes_.load(std::memory_order_acquire) != 0) WakeLocalReader();
    return true;
  }

  // Connection::AdjustBackgroundReads. At 0 (a plain client with no
  // asynchronous call outstanding) synchronous callers may leave their
  // polling announcement up (ReleaseRole); when background reads are wanted
  // again, the reader thread wakes, takes the role and, leaving it, the
  // announcement down.
  void AdjustBackgroundReads(int delta) {
    const int before = background_reads_.fetch_add(delta, std::memory_order_seq_cst);
    if (before == 0 && delta > 0 &&
        (announcement_lingers_.load(std::memory_order_seq_cst) ||
         reader_parked_.load(std::memory_order_seq_cst))) {
      WakeLocalReader();
    }
  }

  // FrameDecoderSink: on the reader-role holder's thread. A payload in the
  // peer's bulk area is delivered where it lies, then released.
  void OnFrame(Frame& frame) override {
    if (input_failed_) return;  // the rest of a corrupt batch
    if ((frame.header.flags & kFlagPayloadInBulk) == 0) {
      if (!detached_.load(std::memory_order_acquire)) sink_->OnFrame(frame);
      return;
    }
    absl::StatusOr<absl::string_view> payload = bulk_in_.Resolve(frame.payload_bytes());
    if (!payload.ok()) {
      input_failed_ = true;
      LOCUS_LOG(WARNING) << "closing shared-memory connection from " << peer_.remote_address
                         << ": malformed input: " << payload.status().message();
      Close(absl::InternalError(
          absl::StrCat("malformed input from peer: ", payload.status().message())));
      return;
    }
    frame.header.flags &= ~kFlagPayloadInBulk;
    frame.header.payload_length = static_cast<uint32_t>(payload->size());
    if (!detached_.load(std::memory_order_acquire)) {
      if (payload->size() > options_.max_receive_message_size) {
        sink_->OnOversizeFrame(frame.header);
      } else {
        frame.borrowed_payload = payload->data();
        sink_->OnFrame(frame);
        frame.borrowed_payload = nullptr;
      }
    }
    bulk_in_.Release();
  }
  void OnOversizeFrame(const FrameHeader& header) override {
    FrameHeader reported = header;
    if ((header.flags & kFlagPayloadInBulk) != 0) {
      // Only with a receive limit under 16 bytes: the reference itself was
      // too large. The payload still counts as delivered for the sender.
      reported.flags &= ~kFlagPayloadInBulk;
      bulk_in_.Release();
    }
    if (!detached_.load(std::memory_order_acquire)) sink_->OnOversizeFrame(reported);
  }

 private:
  enum class DrainResult { kData, kEmpty, kClosed };
  // Whether room in the outgoing ring ends a SleepOnDoorbell.
  enum class SpaceInterest { kNone, kAnyRoom, kIfQueuedForUs };
  // What TryFlushPending found: nothing (left) queued, a sender busy (it
  // flushes), or output left queued because the ring is full.
  enum class FlushResult { kNothingQueued, kSenderBusy, kRingFull };
  // What the reader thread does after giving up the role.
  enum class ReaderNext { kSleep, kWaitForSpace, kLetCallerIn, kStop };

  // How long a reader polls before sleeping (poll_window.h). A caller
  // awaits a reply; the reader thread only while background reads are
  // wanted.
  absl::Duration PollWindow(bool reply_awaited) const {
    return ShmPollWindow(options_.shm_spin, last_sent_payload_.load(std::memory_order_relaxed),
                         reply_awaited);
  }

  // Bulk area `index` (0: client -> server) of the mapping.
  char* BulkArea(int index, uint64_t bulk_capacity) const {
    return mapping_->data() + kShmHeaderSize + 2 * capacity_ + index * bulk_capacity;
  }

  absl::Status CloseReason() {
    absl::MutexLock lock(&close_mu_);
    return closing_ ? close_reason_ : absl::UnavailableError("connection closed");
  }

  // After acquiring role_. An announcement left lingering is this holder's
  // now (it polls under it or takes it down in ReleaseRole, which decides
  // afresh whether it may linger): no longer "lingering" for sleepers and
  // AdjustBackgroundReads.
  void TookRole() {
    role_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    if (polling_announced_) announcement_lingers_.store(false, std::memory_order_relaxed);
  }

  // Everyone who leaves the role looks at the ring: ReleaseRole returns
  // whether input is there, seen while still holding the role and after the
  // announcement came down (Dekker with the producer's seal and its load of
  // consumer_polling, all seq_cst), which covers input the polling
  // announcement kept producers from waking anyone for (DriveUntil's
  // hand-over wakes the reader thread for it; the reader thread drains it).
  //
  // `may_linger` (a synchronous caller leaving DriveUntil): while nobody
  // wants background reads (AdjustBackgroundReads), the announcement stays
  // up until the next caller polls, so that a client making call after
  // call never writes consumer_polling, a cache line the peer reads after
  // every reply (each write costs both sides a cross-core transfer, ~0.25
  // us per call on the development VM). Producers then wake nobody for
  // what arrives between calls: frames nobody waits for, which the next
  // caller drains (Connection::AdjustBackgroundReads allows exactly that).
  // Whoever wants background reads again wakes the reader thread, which
  // takes the announcement down (AdjustBackgroundReads, SleepOnDoorbell).
  bool ReleaseRole(bool may_linger = false) ABSL_UNLOCK_FUNCTION(role_) {
    bool linger = false;
    if (may_linger && polling_announced_) {
      // Dekker with AdjustBackgroundReads (all seq_cst): either it sees the
      // flag (and the reader thread's SleepOnDoorbell does too), or this
      // load sees its count.
      announcement_lingers_.store(true, std::memory_order_seq_cst);
      linger = background_reads_.load(std::memory_order_seq_cst) == 0;
    }
    if (!linger) (void)StopPolling();
    const bool input_left = in_.HasData();
    role_thread_.store(std::thread::id(), std::memory_order_relaxed);
    role_.Release();
    return input_left;
  }

  // Wakes this side's reader thread if it sleeps (e.g. data arrived for it
  // while a caller held the role and kept producers from waking anyone).
  void WakeLocalReader() {
    in_.control()->data_seq.fetch_add(1, std::memory_order_seq_cst);
    FutexWakeAll(&in_.control()->data_seq);
  }

  // The reader thread: drains the ring whenever no caller does, polls (with
  // the role) while it may, sleeps on the futex otherwise; delivers OnClosed.
  void ReaderLoop() {
    for (;;) {
      // A caller holding the role wakes this thread (WakeLocalReader) if it
      // leaves data behind; until then there is nothing to do.
      // Read before trying the role: a caller that releases it and rings
      // in between changes the word, so the park below cannot miss that.
      const uint32_t doorbell_seen = in_.control()->data_seq.load(std::memory_order_seq_cst);
      if (!role_.TryAcquire()) {
        if (ParkWhileCallerReads(doorbell_seen)) continue;
        if (!role_.AcquireWithin(kMaxSleep)) continue;
      }
      TookRole();
      const ReaderNext next = ReadWithRole();
      if (ReleaseRole() && next != ReaderNext::kStop) continue;  // input came as polling ended
      switch (next) {
        case ReaderNext::kStop:
          break;
        case ReaderNext::kLetCallerIn:
          continue;
        case ReaderNext::kWaitForSpace:
          // Output is queued and the ring is full: input or room wakes us.
          SleepOnDoorbell(/*want_data=*/true, SpaceInterest::kAnyRoom, reader_sleep_);
          continue;
        case ReaderNext::kSleep:
          SleepOnDoorbell(/*want_data=*/true, SpaceInterest::kIfQueuedForUs, reader_sleep_);
          continue;
      }
      break;
    }
    // Closed: deliver OnClosed once, holding the role so no caller is
    // delivering frames concurrently.
    role_.Acquire();
    if (!decoder_.at_frame_boundary()) {
      LOCUS_LOG(WARNING) << "shared-memory connection from " << peer_.remote_address
                         << " ended with a truncated frame";
    }
    if (loop_ != nullptr) loop_->Remove(fd_);
    if (!detached_.load(std::memory_order_acquire)) sink_->OnClosed(CloseReason());
  }

  // The reader thread, finding the role taken by a synchronous caller
  // (DriveUntil) while nobody wants background reads: sleeps on the doorbell
  // (read as `seen` before the role was tried) without announcing itself to
  // the peer, so only local rings wake it (the caller left input or queued
  // output behind, background reads are wanted again, the connection
  // closed), besides stray rings of the peer and reader_sleep_. Returns
  // false (without sleeping) if background reads are wanted or the
  // connection closed: the thread then waits for the role itself. Waiting for the
  // role while nobody wants background reads would turn each caller's
  // release of the role into a futex wake-up of this thread, which then
  // preempts the caller on its core (both are usually pinned together) and
  // takes the polling announcement down, so the peer wakes it again: a
  // cycle of a few hundred wake-ups per second in a client calling in a
  // loop.
  bool ParkWhileCallerReads(uint32_t seen) {
    std::atomic<uint32_t>* doorbell = &in_.control()->data_seq;
    // Dekker with AdjustBackgroundReads (all seq_cst): either it sees the
    // flag and rings, or this load sees its count.
    reader_parked_.store(true, std::memory_order_seq_cst);
    if (background_reads_.load(std::memory_order_seq_cst) != 0 ||
        closed_.load(std::memory_order_seq_cst)) {
      reader_parked_.store(false, std::memory_order_relaxed);
      return false;
    }
    FutexWait(doorbell, seen, reader_sleep_);
    reader_parked_.store(false, std::memory_order_relaxed);
    return true;
  }

  // The reader thread, holding the role: drains, then polls while the ring
  // stays empty, until the poll window ends, output must wait for space, a
  // caller wants the role, or the connection closed.
  ReaderNext ReadWithRole() {
    for (;;) {
      const FlushResult flushed = TryFlushPending();
      if (flushed == FlushResult::kRingFull && SendStalled()) return ReaderNext::kStop;
      // Frames the peer wrote before it went away are still delivered:
      // Drain() reports kClosed only once the ring is empty. After closure,
      // one last pass only: a peer that keeps writing must not keep this
      // thread alive.
      const bool was_closed = closed_.load(std::memory_order_acquire);
      const DrainResult drained = Drain();
      if (drained == DrainResult::kClosed || was_closed) return ReaderNext::kStop;
      const bool caller_waiting = SpinBudget::Get().CallerWaiting();
      if (drained == DrainResult::kData) {
        if (caller_waiting) return ReaderNext::kLetCallerIn;
        continue;
      }
      // Poll (for input, and for room if output is queued) before sleeping:
      // a large frame crosses the ring in chunks, and a sleeping side costs
      // a futex wake-up per chunk. While nobody wants background reads (a
      // plain client between synchronous calls) only for shm_spin: after a
      // 1 MiB request, the reply's whole window (~300 us) would be spent on
      // the core its caller needs to prepare the next one.
      const bool reply_awaited = background_reads_.load(std::memory_order_relaxed) > 0;
      if (!caller_waiting && Poll(PollWindow(reply_awaited), /*is_caller=*/false)) continue;
      return flushed == FlushResult::kRingFull ? ReaderNext::kWaitForSpace : ReaderNext::kSleep;
    }
  }

  // Starts loading the first cache lines of what arrived, all at once: the
  // peer's core wrote them, so each is a cross-core transfer, and the
  // decoder and the handler would otherwise touch them one after the other
  // (frame header, then call header, then payload), paying one transfer
  // latency per line in sequence.
  static void PrefetchFrameLines(absl::string_view bytes) {
    constexpr size_t kMaxLines = 8;  // a small frame; a large one streams anyway
    const uintptr_t start = reinterpret_cast<uintptr_t>(bytes.data()) & ~uintptr_t{kCacheLine - 1};
    const uintptr_t end = reinterpret_cast<uintptr_t>(bytes.data()) +
                          std::min(bytes.size(), kMaxLines * kCacheLine);
    for (uintptr_t line = start; line < end; line += kCacheLine) {
      PrefetchForRead(reinterpret_cast<const void*>(line));
    }
  }

  // Caller holds the role. Delivers the records sealed so far, then gives
  // their room back in one store; at most a ring's worth per call: an honest
  // producer cannot write more before the release, and a hostile one that
  // keeps sealing records ahead of this loop must not keep the role holder
  // here for ever (closure, callers, queued output wait for it).
  DrainResult Drain() {
    bool delivered = false;
    for (uint64_t taken = 0; taken < capacity_;) {
      absl::string_view first, second;
      absl::Status readable = in_.Readable(&first, &second);
      if (!readable.ok()) {
        LOCUS_LOG(ERROR) << "closing shared-memory connection to " << peer_.remote_address << ": "
                         << readable.message();
        Close(readable);
        return DrainResult::kClosed;
      }
      if (first.empty()) break;
      delivered = true;
      taken += sizeof(ShmRecordHeader) + first.size() + second.size();
      PrefetchFrameLines(first);
      absl::Status decoded = decoder_.Consume(first, *this);
      if (decoded.ok() && !second.empty()) decoded = decoder_.Consume(second, *this);
      in_.Consume(first.size() + second.size());
      if (input_failed_) return DrainResult::kClosed;  // OnFrame closed the connection
      if (!decoded.ok()) {
        LOCUS_LOG(WARNING) << "closing shared-memory connection from " << peer_.remote_address
                           << ": malformed input: " << decoded.message();
        Close(absl::InternalError(absl::StrCat("malformed input from peer: ", decoded.message())));
        return DrainResult::kClosed;
      }
    }
    if (!delivered) {
      return closed_.load(std::memory_order_acquire) ? DrainResult::kClosed : DrainResult::kEmpty;
    }
    in_.Release();
    return DrainResult::kData;
  }

  // Busy-polls the incoming ring for up to `window` if the spin budget
  // allows. Returns true if data (or closure) showed up: the announcement
  // that this side polls (consumer_polling, which spares the producer a
  // futex wake-up) then stays up while the role holder drains and polls
  // again, so that a side answering call after call never writes that
  // word, a cache line the producer reads after every frame it publishes
  // (each write would cost the producer a cross-core transfer, and the
  // poller one more to take the line back). Returns false once the window
  // ends, with the announcement down. Whoever leaves the role or sleeps
  // calls StopPolling() first, then looks at the ring once more.
  bool Poll(absl::Duration window, bool is_caller) {
    if (window <= absl::ZeroDuration()) return StopPolling();
    SpinBudget& budget = SpinBudget::Get();
    if (!budget.TryAcquire()) {
      if (!is_caller) return StopPolling();
      // A reader thread holding the token yields it within ~1 us when it
      // sees a caller waiting: worth waiting that long for.
      bool acquired = false;
      for (int i = 0; i < 4096 && !acquired; ++i) {
        CpuRelax();
        acquired = budget.TryAcquire();
      }
      if (!acquired) return StopPolling();
    }
    // Whoever polls holds the role and drains what comes: producers need
    // not wake anyone meanwhile.
    if (!polling_announced_) {
      in_.control()->consumer_polling.fetch_add(1, std::memory_order_seq_cst);
      polling_announced_ = true;
    }
    // The clock is read only once polling has lasted a while: most replies
    // arrive within the first few hundred iterations.
    absl::Time until = absl::InfinitePast();
    bool found = false;
    for (uint32_t i = 1;; ++i) {
      if (in_.HasData() || closed_.load(std::memory_order_relaxed) || CanFlush()) {
        found = true;
        break;
      }
      CpuRelax();
      if ((i & 127) == 0) {
        if (until == absl::InfinitePast()) {
          until = absl::Now() + window;
        } else if (absl::Now() >= until) {
          break;
        }
        if (!is_caller && budget.CallerWaiting()) break;  // yield the core to a caller
      }
    }
    budget.Release();
    return found || StopPolling();
  }

  // Takes down this side's polling announcement, if up. Returns whether
  // input (or room for queued output) is there: a producer that saw the
  // announcement did not wake anyone, so the caller looks once more.
  // Reader-role holder only.
  bool StopPolling() {
    if (polling_announced_) {
      in_.control()->consumer_polling.fetch_sub(1, std::memory_order_seq_cst);
      polling_announced_ = false;
      announcement_lingers_.store(false, std::memory_order_relaxed);
    }
    return in_.HasData() || CanFlush();
  }

  // Output queued by the reader-role holder (which never waits for room)
  // must make progress: a peer that stops reading while this side keeps
  // queueing replies would grow the queue without bound. After
  // send_stall_timeout without a byte taken, the connection is closed.
  bool SendStalled() {
    const absl::Duration stuck = absl::Nanoseconds(
        absl::GetCurrentTimeNanos() - last_flush_progress_ns_.load(std::memory_order_acquire));
    if (pending_bytes_.load(std::memory_order_acquire) == 0 || stuck < options_.send_stall_timeout) {
      return false;
    }
    const absl::Status stalled =
        PeerStoppedReadingError(peer_.remote_address, pending_bytes_.load(), stuck);
    LOCUS_LOG(WARNING) << "closing shared-memory connection: " << stalled.message();
    Close(stalled);
    return true;
  }

  // Output is queued, the peer has freed room for it, and no sender (which
  // would flush it itself) is busy.
  bool CanFlush() const {
    if (pending_bytes_.load(std::memory_order_relaxed) == 0) return false;
    if (senders_busy_.load(std::memory_order_relaxed) != 0) return false;
    return out_.RoomHint();
  }

  // Sleeps on this side's doorbell (shm_layout.h) until input arrives (if
  // `want_data`), the peer frees room in the outgoing ring (per `space`),
  // the connection closes, a local wake-up, or `timeout`. Announcing before
  // re-checking (Dekker-style, all seq_cst) means a peer that changes a ring
  // after the check sees the announcement and rings; one that changed it
  // before is caught by the check. Local senders ring after they leave.
  void SleepOnDoorbell(bool want_data, SpaceInterest space, absl::Duration timeout) {
    ShmRingControl* in = in_.control();
    ShmRingControl* out = out_.control();
    const uint32_t seq = in->data_seq.load(std::memory_order_seq_cst);
    // kIfQueuedForUs: the reader thread flushes queued output when no
    // sender is busy (a busy sender flushes it, and rings when it leaves).
    const bool want_space =
        space == SpaceInterest::kAnyRoom ||
        (space == SpaceInterest::kIfQueuedForUs && pending_bytes_.load(std::memory_order_seq_cst) != 0);
    if (want_data) in->consumer_sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (want_space) out->producer_sleepers.fetch_add(1, std::memory_order_seq_cst);
    const bool room =
        want_space && out_.RoomHint() &&
        (space == SpaceInterest::kAnyRoom || senders_busy_.load(std::memory_order_seq_cst) == 0);
    // A lingering announcement (ReleaseRole) that background reads now
    // need taken down: the reader thread must not sleep under it.
    const bool lingering_unwanted = announcement_lingers_.load(std::memory_order_seq_cst) &&
                                    background_reads_.load(std::memory_order_seq_cst) > 0;
    const bool ready = closed_.load(std::memory_order_seq_cst) ||
                       (want_data && in_.HasDataHint()) || room || lingering_unwanted;
    if (!ready) FutexWait(&in->data_seq, seq, timeout);
    if (want_space) out->producer_sleepers.fetch_sub(1, std::memory_order_seq_cst);
    if (want_data) in->consumer_sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }

  // Copies as much of `*part` as fits into the outgoing ring. Caller holds
  // send_mu_.
  absl::Status WriteSome(absl::string_view* part) ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_) {
    if (part->empty()) return absl::OkStatus();
    uint64_t free = 0;
    absl::Status ok = out_.FreeSpace(&free, part->size());
    if (!ok.ok()) {
      LOCUS_LOG(ERROR) << "closing shared-memory connection to " << peer_.remote_address << ": "
                       << ok.message();
      Close(ok);
      return absl::UnavailableError(ok.message());
    }
    size_t n = std::min<uint64_t>(free, part->size());
    if (n > 0) {
      out_.Write(part->data(), n);
      part->remove_prefix(n);
    }
    return absl::OkStatus();
  }

  // Moves queued bytes into the ring as space allows.
  absl::Status FlushPendingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_) {
    bool wrote_any = false;
    absl::Status wrote = absl::OkStatus();
    while (!pending_.empty()) {
      const std::string& front = pending_.front();
      absl::string_view rest(front.data() + pending_offset_, front.size() - pending_offset_);
      const size_t before = rest.size();
      wrote = WriteSome(&rest);
      pending_offset_ += before - rest.size();
      wrote_any |= before != rest.size();
      if (!wrote.ok() || !rest.empty()) break;  // error, or the ring is full
      pending_total_ -= front.size();
      pending_offset_ = 0;
      pending_.pop_front();
    }
    pending_bytes_.store(pending_total_ - pending_offset_, std::memory_order_release);
    if (wrote_any) {
      last_flush_progress_ns_.store(absl::GetCurrentTimeNanos(), std::memory_order_release);
      out_.WakeConsumerIfSleeping();
    }
    return wrote;
  }

  // For the reader-role holder: flushes queued output if no sender is busy
  // (a busy sender flushes it itself).
  FlushResult TryFlushPending() {
    if (pending_bytes_.load(std::memory_order_acquire) == 0) return FlushResult::kNothingQueued;
    if (!send_mu_.TryLock()) return FlushResult::kSenderBusy;
    (void)FlushPendingLocked();
    const bool left = !pending_.empty();
    send_mu_.Unlock();
    return left ? FlushResult::kRingFull : FlushResult::kNothingQueued;
  }

  const int fd_;
  const std::unique_ptr<ShmMapping> mapping_;
  ShmRegionHeader* const header_;
  const uint64_t capacity_;
  const uint64_t bulk_capacity_;
  ShmRing out_;  // written under send_mu_
  ShmRing in_;   // used by the reader-role holder (HasData() by pollers)
  ShmBulkWriter bulk_out_ ABSL_GUARDED_BY(send_mu_);
  ShmBulkReader bulk_in_;   // used by the reader-role holder
  const PeerInfo peer_;
  const TransportOptions options_;
  FrameSink* sink_ = nullptr;
  EventLoop* loop_ = nullptr;
  std::thread reader_;
  FrameDecoder decoder_;  // reader-role holder only
  // Reader-role holder only: this side's consumer_polling is raised (Poll).
  bool polling_announced_ = false;
  // Set (by a caller leaving DriveUntil) while the announcement stays up
  // with nobody polling; cleared when it comes down. Read by anyone.
  std::atomic<bool> announcement_lingers_{false};
  // The reader thread sleeps in ParkWhileCallerReads.
  std::atomic<bool> reader_parked_{false};
  // How long the idle reader thread sleeps before it looks again by itself
  // (kMaxSleep; tests lengthen it so that only real wake-ups wake it).
  absl::Duration reader_sleep_ = kMaxSleep;
  // Connection::AdjustBackgroundReads' count; connections start at 1.
  std::atomic<int> background_reads_{1};
  bool input_failed_ = false;  // reader-role holder only: the peer sent garbage
  std::atomic<bool> closed_{false};
  std::atomic<bool> detached_{false};  // the wrapper (and maybe the sink) is gone

  absl::Mutex send_mu_;
  // Output queued while the ring was full, one frame (or its unwritten
  // rest) per entry; the front entry is written from pending_offset_.
  std::deque<std::string> pending_ ABSL_GUARDED_BY(send_mu_);
  size_t pending_offset_ ABSL_GUARDED_BY(send_mu_) = 0;
  size_t pending_total_ ABSL_GUARDED_BY(send_mu_) = 0;  // bytes in pending_
  std::atomic<size_t> pending_bytes_{0};
  std::atomic<int> senders_busy_{0};  // threads inside Send, other than the role holder
  std::atomic<uint64_t> last_sent_payload_{0};  // payload bytes of the last frame sent
  // When queued output last moved (or the queue started): see SendStalled.
  std::atomic<int64_t> last_flush_progress_ns_{0};
  // The thread holding the reader role (default id: none).
  std::atomic<std::thread::id> role_thread_{};

  // Held by whoever reads `in_` and feeds `decoder_`: the reader thread or
  // a driving caller.
  ReaderRole role_;

  absl::Mutex close_mu_;
  bool closing_ ABSL_GUARDED_BY(close_mu_) = false;
  absl::Status close_reason_ ABSL_GUARDED_BY(close_mu_);
};

std::unique_ptr<ShmConnection> ShmConnection::Create(int socket_fd,
                                                     std::unique_ptr<ShmMapping> mapping,
                                                     bool client_side, const ShmGeometry& geometry,
                                                     PeerInfo peer, const TransportOptions& options) {
  return std::unique_ptr<ShmConnection>(new ShmConnection(std::make_shared<Impl>(
      socket_fd, std::move(mapping), client_side, geometry.ring_capacity, geometry.bulk_capacity,
      geometry.seal_key, std::move(peer), options)));
}

ShmConnection::~ShmConnection() { impl_->Shutdown(); }
void ShmConnection::Start(FrameSink* sink) { impl_->Start(sink); }
absl::Status ShmConnection::Send(const FrameHeader& header, absl::string_view meta,
                                 absl::string_view payload, absl::Time deadline) {
  return impl_->Send(header, meta, payload, deadline);
}
absl::Status ShmConnection::SendWithPayloadWriter(const FrameHeader& header, absl::string_view meta,
                                                  PayloadWriter write_payload, absl::Time deadline) {
  bool sent = false;
  absl::Status status = impl_->SendInBulk(header, meta, write_payload, deadline, &sent);
  if (sent || !status.ok()) return status;
  if (header.payload_length < kMinBulkPayload) {
    status = impl_->SendInRing(header, meta, write_payload, &sent);
    if (sent || !status.ok()) return status;
  }
  return Connection::SendWithPayloadWriter(header, meta, write_payload, deadline);
}
void ShmConnection::Close(const absl::Status& reason) { impl_->Close(reason); }
bool ShmConnection::DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
  return impl_->DriveUntil(done, deadline);
}
void ShmConnection::AdjustBackgroundReads(int delta) { impl_->AdjustBackgroundReads(delta); }
bool ShmConnection::HasQueuedOutput() const { return impl_->HasQueuedOutput(); }
void ShmConnection::SetReaderSleepForTesting(absl::Duration sleep) {
  impl_->SetReaderSleepForTesting(sleep);
}
bool ShmConnection::ReaderParkedForTesting() const { return impl_->ReaderParkedForTesting(); }
const PeerInfo& ShmConnection::peer() const { return impl_->peer(); }

}  // namespace locus::internal
