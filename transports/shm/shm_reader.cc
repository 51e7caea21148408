#include "transports/shm/shm_reader.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "transports/common/spin_budget.h"
#include "transports/shm/cache_prefetch.h"
#include "transports/shm/poll_window.h"

namespace locus::internal {
namespace {

// Starts loading the first cache lines of what arrived, all at once: the
// peer's core wrote them, so each is a cross-core transfer, and the
// decoder and the handler would otherwise touch them one after the other
// (frame header, then call header, then payload), paying one transfer
// latency per line in sequence.
void PrefetchFrameLines(absl::string_view bytes) {
  constexpr size_t kMaxLines = 8;  // a small frame; a large one streams anyway
  const uintptr_t start = reinterpret_cast<uintptr_t>(bytes.data()) & ~uintptr_t{kCacheLine - 1};
  const uintptr_t end = reinterpret_cast<uintptr_t>(bytes.data()) +
                        std::min(bytes.size(), kMaxLines * kCacheLine);
  for (uintptr_t line = start; line < end; line += kCacheLine) {
    PrefetchForRead(reinterpret_cast<const void*>(line));
  }
}

}  // namespace

ShmReader::ShmReader(char* region, const ShmGeometry& geometry, int ring, int socket_fd,
                     const PeerInfo& peer, const TransportOptions& options, Owner* owner)
    : in_(&reinterpret_cast<ShmRegionHeader*>(region)->rings[ring],
          ShmRingData(region, geometry, ring), geometry.ring_capacity,
          &reinterpret_cast<ShmRegionHeader*>(region)->rings[1 - ring].data_seq, geometry.seal_key),
      in_control_(&reinterpret_cast<ShmRegionHeader*>(region)->rings[ring]),
      bulk_in_(&reinterpret_cast<ShmRegionHeader*>(region)->bulk[ring],
               ShmBulkData(region, geometry, ring), geometry.bulk_capacity),
      decoder_(options.max_meta_size, options.max_receive_message_size,
               kFlagPayloadInBulk | kFlagsFdCount),
      capacity_(geometry.ring_capacity),
      socket_fd_(socket_fd),
      owner_(owner),
      peer_address_(peer.remote_address),
      max_receive_message_size_(options.max_receive_message_size),
      shm_spin_(options.shm_spin) {}

bool ShmReader::DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline, ShmWriter& writer,
                           const CloseState& close) {
  SpinBudget& budget = SpinBudget::Get();
  // Announced while driving: the reader thread then stops polling with
  // the role (as soon as it sees the announcement) and leaves the spin
  // budget to this caller.
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
  while (!done() && !close.closed(std::memory_order_acquire)) {
    const ShmWriter::FlushResult flushed = writer.TryFlushPending();
    if (Drain(close) == DrainResult::kData) continue;
    absl::Duration window = PollWindow(/*reply_awaited=*/true, writer);
    if (has_deadline) {
      const int64_t now_ns = absl::GetCurrentTimeNanos();
      if (now_ns >= deadline_ns) break;
      window = std::min(window, absl::Nanoseconds(deadline_ns - now_ns));
    }
    if (Poll(window, /*is_caller=*/true, writer, close)) continue;
    absl::Duration sleep = kMaxSleep;
    if (has_deadline) {
      const absl::Time now = absl::Now();
      if (now >= deadline) break;
      sleep = std::min(sleep, deadline - now);
    }
    // If our request is still queued, room in the ring wakes us too.
    SleepOnDoorbell(writer, close, /*want_data=*/true,
                    flushed == ShmWriter::FlushResult::kRingFull ? SpaceInterest::kAnyRoom
                                                                 : SpaceInterest::kNone,
                    sleep);
  }
  budget.WithdrawCaller();
  const bool input_left = ReleaseRole(writer, /*may_linger=*/true);
  // While this caller held the role, producers did not wake anyone: hand
  // whatever arrived meanwhile (for other calls) to the reader thread.
  if (input_left || writer.queued_bytes(std::memory_order_acquire) != 0) WakeLocal();
  return true;
}

void ShmReader::AdjustBackgroundReads(int delta) {
  const int before = background_reads_.fetch_add(delta, std::memory_order_seq_cst);
  if (before == 0 && delta > 0 &&
      (announcement_lingers_.load(std::memory_order_seq_cst) ||
       reader_parked_.load(std::memory_order_seq_cst))) {
    WakeLocal();
  }
}

void ShmReader::FailInput(const absl::Status& why) {
  input_failed_ = true;
  LOCUS_LOG(WARNING) << "closing shared-memory connection from " << peer_address_
                     << ": malformed input: " << why.message();
  owner_->Close(absl::InternalError(absl::StrCat("malformed input from peer: ", why.message())));
}

bool ShmReader::ClaimFds(uint32_t flags, std::vector<OwnedFd>* fds) {
  const size_t count = DecodeFdCount(flags);
  if (count == 0) return true;
  if (count > kMaxFdsPerFrame) {
    FailInput(absl::InvalidArgumentError(absl::StrCat(
        "a frame claims ", count, " file descriptors; at most ", kMaxFdsPerFrame, " are allowed")));
    return false;
  }
  // One byte, the count, with the descriptors: what the sender put on the
  // socket before the frame (shm_writer.h).
  char announced = 0;
  iovec iov{&announced, 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  fds_in_.PrepareFor(&msg);
  ssize_t n;
  do {
    n = recvmsg(socket_fd_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  std::vector<OwnedFd> received;  // closed unless handed on
  absl::Status collected =
      n >= 0 ? fds_in_.Collect(msg, &received) : absl::OkStatus();
  if (!collected.ok()) {
    FailInput(collected);
    return false;
  }
  if (n != 1 || static_cast<unsigned char>(announced) != count || received.size() != count) {
    FailInput(absl::InvalidArgumentError(absl::StrCat(
        "a frame claims ", count, " file descriptors but the socket ",
        n == 1 ? absl::StrCat("carried ", received.size(), " announced as ",
                              static_cast<unsigned char>(announced))
               : absl::StrCat("had none (", n < 0 ? std::strerror(errno) : "closed", ")"))));
    return false;
  }
  for (OwnedFd& fd : received) fds->push_back(std::move(fd));
  return true;
}

void ShmReader::OnFrame(Frame& frame) {
  if (input_failed_) return;  // the rest of a corrupt batch
  // The descriptors first: whatever becomes of the frame, its message
  // leaves the socket (closed with the frame if not delivered).
  if (!ClaimFds(frame.header.flags, &frame.fds)) return;
  frame.header.flags &= ~kFlagsFdCount;
  if ((frame.header.flags & kFlagPayloadInBulk) == 0) {
    if (!detached_.load(std::memory_order_acquire)) sink_->OnFrame(frame);
    frame.fds.clear();  // those the sink left (contract 12)
    return;
  }
  absl::StatusOr<absl::string_view> payload = bulk_in_.Resolve(frame.payload_bytes());
  if (!payload.ok()) {
    frame.fds.clear();
    FailInput(payload.status());
    return;
  }
  frame.header.flags &= ~kFlagPayloadInBulk;
  frame.header.payload_length = static_cast<uint32_t>(payload->size());
  if (!detached_.load(std::memory_order_acquire)) {
    if (payload->size() > max_receive_message_size_) {
      sink_->OnOversizeFrame(frame.header);
    } else {
      frame.borrowed_payload = payload->data();
      sink_->OnFrame(frame);
      frame.borrowed_payload = nullptr;
    }
  }
  frame.fds.clear();
  bulk_in_.Release();
}

void ShmReader::OnOversizeFrame(const FrameHeader& header) {
  if (input_failed_) return;
  FrameHeader reported = header;
  // The frame is skipped: its descriptors are received and closed.
  std::vector<OwnedFd> skipped;
  if (!ClaimFds(header.flags, &skipped)) return;
  reported.flags &= ~kFlagsFdCount;
  if ((header.flags & kFlagPayloadInBulk) != 0) {
    // Only with a receive limit under 16 bytes: the reference itself was
    // too large. The payload still counts as delivered for the sender.
    reported.flags &= ~kFlagPayloadInBulk;
    bulk_in_.Release();
  }
  if (!detached_.load(std::memory_order_acquire)) sink_->OnOversizeFrame(reported);
}

absl::Duration ShmReader::PollWindow(bool reply_awaited, const ShmWriter& writer) const {
  return ShmPollWindow(shm_spin_, writer.last_sent_payload(), reply_awaited);
}

// An announcement left lingering is this holder's now (it polls under it or
// takes it down in ReleaseRole, which decides afresh whether it may
// linger): no longer "lingering" for sleepers and AdjustBackgroundReads.
void ShmReader::TookRole() {
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
// up until the next caller polls, so that a client making call after call
// never writes consumer_polling, a cache line the peer reads after every
// reply (each write costs both sides a cross-core transfer per call).
// Producers then wake nobody for what arrives between calls: frames nobody
// waits for, which the next caller drains (Connection::AdjustBackgroundReads
// allows exactly that). Whoever wants background reads again wakes the
// reader thread, which takes the announcement down (AdjustBackgroundReads,
// SleepOnDoorbell).
bool ShmReader::ReleaseRole(const ShmWriter& writer, bool may_linger) {
  bool linger = false;
  if (may_linger && polling_announced_) {
    // Dekker with AdjustBackgroundReads (all seq_cst): either it sees the
    // flag (and the reader thread's SleepOnDoorbell does too), or this
    // load sees its count.
    announcement_lingers_.store(true, std::memory_order_seq_cst);
    linger = background_reads_.load(std::memory_order_seq_cst) == 0;
  }
  if (!linger) (void)StopPolling(writer);
  const bool input_left = in_.HasData();
  role_thread_.store(std::thread::id(), std::memory_order_relaxed);
  role_.Release();
  return input_left;
}

void ShmReader::ReadUntilClosed(ShmWriter& writer, const CloseState& close) {
  for (;;) {
    // A caller holding the role wakes this thread (WakeLocal) if it leaves
    // data behind; until then there is nothing to do.
    // Read before trying the role: a caller that releases it and rings
    // in between changes the word, so the park below cannot miss that.
    const uint32_t doorbell_seen = in_control_->data_seq.load(std::memory_order_seq_cst);
    if (!role_.TryAcquire()) {
      if (ParkWhileCallerReads(doorbell_seen, close)) continue;
      if (!role_.AcquireWithin(kMaxSleep)) continue;
    }
    TookRole();
    const ReaderNext next = ReadWithRole(writer, close);
    if (ReleaseRole(writer) && next != ReaderNext::kStop) continue;  // input came as polling ended
    switch (next) {
      case ReaderNext::kStop:
        return;
      case ReaderNext::kLetCallerIn:
        continue;
      case ReaderNext::kWaitForSpace:
        // Output is queued and the ring is full: input or room wakes us.
        SleepOnDoorbell(writer, close, /*want_data=*/true, SpaceInterest::kAnyRoom, idle_sleep_);
        continue;
      case ReaderNext::kSleep:
        SleepOnDoorbell(writer, close, /*want_data=*/true, SpaceInterest::kIfQueuedForUs, idle_sleep_);
        continue;
    }
    return;
  }
}

// Unchecked: takes the role for good (it is never released), which the
// analysis cannot express for a member function.
void ShmReader::StopReading() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  role_.Acquire();
  if (!decoder_.at_frame_boundary()) {
    LOCUS_LOG(WARNING) << "shared-memory connection from " << peer_address_
                       << " ended with a truncated frame";
  }
}

void ShmReader::DeliverClosed(const absl::Status& reason) {
  if (!detached_.load(std::memory_order_acquire)) sink_->OnClosed(reason);
}

// The reader thread, finding the role taken by a synchronous caller
// (DriveUntil) while nobody wants background reads: sleeps on the doorbell
// (read as `seen` before the role was tried) without announcing itself to
// the peer, so only local rings wake it (the caller left input or queued
// output behind, background reads are wanted again, the connection
// closed), besides stray rings of the peer and idle_sleep_. Returns false
// (without sleeping) if background reads are wanted or the connection
// closed: the thread then waits for the role itself. Waiting for the role
// while nobody wants background reads would turn each caller's release of
// the role into a futex wake-up of this thread, which then preempts the
// caller on its core (both are usually pinned together) and takes the
// polling announcement down, so the peer wakes it again: a cycle of a few
// hundred wake-ups per second in a client calling in a loop.
bool ShmReader::ParkWhileCallerReads(uint32_t seen, const CloseState& close) {
  std::atomic<uint32_t>* doorbell = &in_control_->data_seq;
  // Dekker with AdjustBackgroundReads (all seq_cst): either it sees the
  // flag and rings, or this load sees its count.
  reader_parked_.store(true, std::memory_order_seq_cst);
  if (background_reads_.load(std::memory_order_seq_cst) != 0 ||
      close.closed(std::memory_order_seq_cst)) {
    reader_parked_.store(false, std::memory_order_relaxed);
    return false;
  }
  FutexWait(doorbell, seen, idle_sleep_);
  reader_parked_.store(false, std::memory_order_relaxed);
  return true;
}

// Drains, then polls while the ring stays empty, until the poll window
// ends, output must wait for space, a caller wants the role, or the
// connection closed.
ShmReader::ReaderNext ShmReader::ReadWithRole(ShmWriter& writer, const CloseState& close) {
  for (;;) {
    const ShmWriter::FlushResult flushed = writer.TryFlushPending();
    if (flushed == ShmWriter::FlushResult::kRingFull && writer.SendStalled()) return ReaderNext::kStop;
    // Frames the peer wrote before it went away are still delivered:
    // Drain() reports kClosed only once the ring is empty. After closure,
    // one last pass only: a peer that keeps writing must not keep this
    // thread alive.
    const bool was_closed = close.closed(std::memory_order_acquire);
    const DrainResult drained = Drain(close);
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
    // large request, the reply's whole window would be spent on the core
    // its caller needs to prepare the next one.
    const bool reply_awaited = background_reads_.load(std::memory_order_relaxed) > 0;
    if (!caller_waiting && Poll(PollWindow(reply_awaited, writer), /*is_caller=*/false, writer, close)) {
      continue;
    }
    return flushed == ShmWriter::FlushResult::kRingFull ? ReaderNext::kWaitForSpace
                                                        : ReaderNext::kSleep;
  }
}

// Delivers the records sealed so far, then gives their room back in one
// store; at most a ring's worth per call: an honest producer cannot write
// more before the release, and a hostile one that keeps sealing records
// ahead of this loop must not keep the role holder here for ever (closure,
// callers, queued output wait for it).
ShmReader::DrainResult ShmReader::Drain(const CloseState& close) {
  bool delivered = false;
  for (uint64_t taken = 0; taken < capacity_;) {
    absl::string_view first, second;
    absl::Status readable = in_.Readable(&first, &second);
    if (!readable.ok()) {
      LOCUS_LOG(ERROR) << "closing shared-memory connection to " << peer_address_ << ": "
                       << readable.message();
      owner_->Close(readable);
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
      LOCUS_LOG(WARNING) << "closing shared-memory connection from " << peer_address_
                         << ": malformed input: " << decoded.message();
      owner_->Close(absl::InternalError(absl::StrCat("malformed input from peer: ", decoded.message())));
      return DrainResult::kClosed;
    }
  }
  if (!delivered) {
    return close.closed(std::memory_order_acquire) ? DrainResult::kClosed : DrainResult::kEmpty;
  }
  in_.Release();
  return DrainResult::kData;
}

// Returns true if data (or closure, or room for queued output) showed up:
// the announcement that this side polls (consumer_polling, which spares the
// producer a futex wake-up) then stays up while the role holder drains and
// polls again, so that a side answering call after call never writes that
// word, a cache line the producer reads after every frame it publishes
// (each write would cost the producer a cross-core transfer, and the
// poller one more to take the line back). Returns false once the window
// ends (or the spin budget has no slot), with the announcement down.
// Whoever leaves the role or sleeps calls StopPolling() first, then looks
// at the ring once more.
bool ShmReader::Poll(absl::Duration window, bool is_caller, const ShmWriter& writer,
                     const CloseState& close) {
  if (window <= absl::ZeroDuration()) return StopPolling(writer);
  SpinBudget& budget = SpinBudget::Get();
  if (!budget.TryAcquire()) {
    if (!is_caller) return StopPolling(writer);
    // A reader thread holding the token yields it as soon as it sees a
    // caller waiting (it checks every 128 iterations): worth waiting for.
    bool acquired = false;
    for (int i = 0; i < 4096 && !acquired; ++i) {
      CpuRelax();
      acquired = budget.TryAcquire();
    }
    if (!acquired) return StopPolling(writer);
  }
  // Whoever polls holds the role and drains what comes: producers need
  // not wake anyone meanwhile.
  if (!polling_announced_) {
    in_control_->consumer_polling.fetch_add(1, std::memory_order_seq_cst);
    polling_announced_ = true;
  }
  // The clock is read only once polling has lasted a while: most replies
  // arrive within the first few hundred iterations.
  absl::Time until = absl::InfinitePast();
  bool found = false;
  for (uint32_t i = 1;; ++i) {
    if (in_.HasData() || close.closed(std::memory_order_relaxed) || writer.CanFlush()) {
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
  return found || StopPolling(writer);
}

// Returns whether input (or room for queued output) is there: a producer
// that saw the announcement did not wake anyone, so the caller looks once
// more.
bool ShmReader::StopPolling(const ShmWriter& writer) {
  if (polling_announced_) {
    in_control_->consumer_polling.fetch_sub(1, std::memory_order_seq_cst);
    polling_announced_ = false;
    announcement_lingers_.store(false, std::memory_order_relaxed);
  }
  return in_.HasData() || writer.CanFlush();
}

void ShmReader::SleepOnDoorbell(const ShmWriter& writer, const CloseState& close, bool want_data,
                                SpaceInterest space, absl::Duration timeout) {
  ShmRingControl* in = in_control_;
  ShmRingControl* out = writer.ring_control();
  const uint32_t seq = in->data_seq.load(std::memory_order_seq_cst);
  // kIfQueuedForUs: the reader thread flushes queued output when no
  // sender is busy (a busy sender flushes it, and rings when it leaves).
  const bool want_space =
      space == SpaceInterest::kAnyRoom ||
      (space == SpaceInterest::kIfQueuedForUs && writer.queued_bytes(std::memory_order_seq_cst) != 0);
  if (want_data) in->consumer_sleepers.fetch_add(1, std::memory_order_seq_cst);
  if (want_space) out->producer_sleepers.fetch_add(1, std::memory_order_seq_cst);
  const bool room =
      want_space && writer.RoomHint() &&
      (space == SpaceInterest::kAnyRoom || !writer.senders_busy(std::memory_order_seq_cst));
  // A lingering announcement (ReleaseRole) that background reads now
  // need taken down: the reader thread must not sleep under it.
  const bool lingering_unwanted = announcement_lingers_.load(std::memory_order_seq_cst) &&
                                  background_reads_.load(std::memory_order_seq_cst) > 0;
  const bool ready = close.closed(std::memory_order_seq_cst) || (want_data && InputHint()) ||
                     room || lingering_unwanted;
  if (!ready) FutexWait(&in->data_seq, seq, timeout);
  if (want_space) out->producer_sleepers.fetch_sub(1, std::memory_order_seq_cst);
  if (want_data) in->consumer_sleepers.fetch_sub(1, std::memory_order_seq_cst);
}

}  // namespace locus::internal
