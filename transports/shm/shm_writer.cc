#include "transports/shm/shm_writer.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "transports/common/copy_bytes.h"
#include "transports/common/frame_fds.h"
#include "transports/common/send_stall.h"

namespace locus::internal {
namespace {

// How much of the outgoing ring a sender takes ownership of ahead of its
// next frame (ShmRing::PrefetchNextWrites): a small frame or two. Only after
// a small frame (kPrefetchAheadAfter): a large one costs its copy, and the
// consumer streams through it with the hardware prefetcher reading ahead,
// into the lines taking ownership would steal.
constexpr size_t kPrefetchAheadBytes = 256;
constexpr size_t kPrefetchAheadAfter = 512;

// The longest a sender waiting for room on the socket sleeps before it
// flushes queued output and looks again.
constexpr absl::Duration kFdSocketWaitSlice = absl::Milliseconds(10);

}  // namespace

ShmWriter::ShmWriter(char* region, const ShmGeometry& geometry, int ring, int socket_fd,
                     const PeerInfo& peer, const TransportOptions& options, Owner* owner)
    : out_(&reinterpret_cast<ShmRegionHeader*>(region)->rings[ring],
           ShmRingData(region, geometry, ring), geometry.ring_capacity,
           &reinterpret_cast<ShmRegionHeader*>(region)->rings[1 - ring].data_seq, geometry.seal_key),
      bulk_out_(&reinterpret_cast<ShmRegionHeader*>(region)->bulk[ring],
                ShmBulkData(region, geometry, ring), geometry.bulk_capacity),
      bulk_capacity_(geometry.bulk_capacity),
      own_doorbell_(&reinterpret_cast<ShmRegionHeader*>(region)->rings[1 - ring].data_seq),
      socket_fd_(socket_fd),
      owner_(owner),
      peer_address_(peer.remote_address),
      send_stall_timeout_(options.send_stall_timeout),
      max_send_queue_bytes_(options.max_send_queue_bytes) {}

void ShmWriter::PublishFrameLocked(size_t frame_bytes) {
  out_.Publish();
  out_.WakeConsumerIfSleeping();
  if (frame_bytes <= kPrefetchAheadAfter) out_.PrefetchNextWrites(kPrefetchAheadBytes);
}

absl::Status ShmWriter::SendLocked(const FrameHeader& header, absl::string_view meta,
                                   absl::string_view payload, absl::Span<const int> fds,
                                   absl::Time deadline, bool role_holder,
                                   const CloseState& close) {
  absl::string_view parts[3] = {
      absl::string_view(reinterpret_cast<const char*>(&header), sizeof(header)), meta, payload};
  absl::Status flushed = FlushPendingLocked();
  if (!flushed.ok()) return flushed;
  // The descriptors are on the socket before the frame can be seen in the
  // ring: a reader that finds the frame finds them.
  if (!fds.empty()) {
    absl::Status passed = SendFdsLocked(fds, deadline, close);
    if (!passed.ok()) return passed;
  }
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
  if (pending_.empty()) {
    last_flush_progress_ns_.store(absl::GetCurrentTimeNanos(), std::memory_order_release);
  }
  std::string& entry = pending_.emplace_back();
  entry.reserve(left);
  for (absl::string_view part : parts) AppendBytes(&entry, part.data(), part.size());
  pending_total_ += left;
  pending_bytes_.store(pending_total_ - pending_offset_, std::memory_order_release);
  if (role_holder) return absl::OkStatus();
  return WaitBelowQueueLimitLocked(deadline, close);
}

absl::Status ShmWriter::WaitBelowQueueLimitLocked(absl::Time deadline, const CloseState& close) {
  const absl::Time stall_deadline = absl::Now() + send_stall_timeout_;
  while (pending_total_ - pending_offset_ > max_send_queue_bytes_) {
    if (close.closed(std::memory_order_acquire)) return absl::UnavailableError("connection closed");
    absl::Time now = absl::Now();
    if (now >= stall_deadline) {
      // The frame is queued and cannot be taken back: the connection is done.
      const absl::Status stalled =
          PeerStoppedReadingError(peer_address_, pending_total_ - pending_offset_, send_stall_timeout_);
      LOCUS_LOG(WARNING) << "closing shared-memory connection: " << stalled.message();
      owner_->Close(stalled);
      return stalled;
    }
    if (now >= deadline) return absl::DeadlineExceededError("deadline passed while the peer was not reading");
    mu_.Unlock();
    owner_->SleepUntilRoom(std::min(deadline, stall_deadline) - now);
    mu_.Lock();
    absl::Status flushed = FlushPendingLocked();
    if (!flushed.ok()) return flushed;
  }
  return absl::OkStatus();
}

absl::Status ShmWriter::SendInBulkLocked(const FrameHeader& header, absl::string_view meta,
                                         Connection::PayloadWriter write_payload,
                                         absl::Time deadline, bool role_holder,
                                         const CloseState& close, bool* in_bulk) {
  *in_bulk = false;
  // Reserve says nullopt for a payload the area cannot hold at all.
  absl::StatusOr<std::optional<uint64_t>> at = bulk_out_.Reserve(header.payload_length);
  if (!at.ok()) {
    LOCUS_LOG(ERROR) << "closing shared-memory connection to " << peer_address_ << ": "
                     << at.status().message();
    owner_->Close(at.status());
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
                    absl::string_view(reinterpret_cast<const char*>(&ref), sizeof(ref)), {},
                    deadline, role_holder, close);
}

absl::Status ShmWriter::SendInRingLocked(const FrameHeader& header, absl::string_view meta,
                                         Connection::PayloadWriter write_payload, bool* in_ring) {
  *in_ring = false;
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
}

absl::Status ShmWriter::SendFdsLocked(absl::Span<const int> fds, absl::Time deadline,
                                      const CloseState& close) {
  // One byte, the count, which the receiver checks against the frame's.
  char count = static_cast<char>(fds.size());
  iovec iov{&count, 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  FdsToSend control;
  control.AttachTo(fds, &msg);
  const absl::Time stall_deadline = absl::Now() + send_stall_timeout_;
  for (;;) {
    if (close.closed(std::memory_order_acquire)) return close.ClosedError();
    const ssize_t n = sendmsg(socket_fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == 1) return absl::OkStatus();
    const int err = n < 0 ? errno : EIO;
    if (err == EINTR) continue;
    if (err == EBADF) {
      return absl::InvalidArgumentError("a file descriptor to send was closed during the call");
    }
    if (err == ETOOMANYREFS || err == ENOMEM || err == ENOBUFS) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot pass file descriptors to ", peer_address_, ": ", std::strerror(err)));
    }
    if (err != EAGAIN) {
      const absl::Status failed = absl::UnavailableError(absl::StrCat(
          "passing file descriptors to ", peer_address_, " failed: ", std::strerror(err)));
      owner_->Close(failed);
      return failed;
    }
    // The peer has not taken the descriptors of earlier frames: queued
    // frames may be what it needs to reach them.
    (void)FlushPendingLocked();
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          "deadline passed while the peer was not taking file descriptors");
    }
    if (now >= stall_deadline) {
      const absl::Status stalled = absl::DeadlineExceededError(
          absl::StrCat("peer ", peer_address_, " took no file descriptors for ",
                       absl::FormatDuration(send_stall_timeout_)));
      LOCUS_LOG(WARNING) << "closing shared-memory connection: " << stalled.message();
      owner_->Close(stalled);
      return stalled;
    }
    // Closing the connection shuts the socket down, which ends this wait.
    const absl::Duration wait = std::min({deadline - now, stall_deadline - now, kFdSocketWaitSlice});
    mu_.Unlock();
    pollfd pfd{socket_fd_, POLLOUT, 0};
    (void)poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(wait)) + 1);
    mu_.Lock();
  }
}

absl::Status ShmWriter::WriteSome(absl::string_view* part) {
  if (part->empty()) return absl::OkStatus();
  uint64_t free = 0;
  absl::Status ok = out_.FreeSpace(&free, part->size());
  if (!ok.ok()) {
    LOCUS_LOG(ERROR) << "closing shared-memory connection to " << peer_address_ << ": "
                     << ok.message();
    owner_->Close(ok);
    return absl::UnavailableError(ok.message());
  }
  size_t n = std::min<uint64_t>(free, part->size());
  if (n > 0) {
    out_.Write(part->data(), n);
    part->remove_prefix(n);
  }
  return absl::OkStatus();
}

absl::Status ShmWriter::FlushPendingLocked() {
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

ShmWriter::FlushResult ShmWriter::FlushPendingUnlessBusy() {
  if (!mu_.TryLock()) return FlushResult::kSenderBusy;
  (void)FlushPendingLocked();
  const bool left = !pending_.empty();
  mu_.Unlock();
  return left ? FlushResult::kRingFull : FlushResult::kNothingQueued;
}

bool ShmWriter::SendStalled() {
  const absl::Duration stuck = absl::Nanoseconds(
      absl::GetCurrentTimeNanos() - last_flush_progress_ns_.load(std::memory_order_acquire));
  if (pending_bytes_.load(std::memory_order_acquire) == 0 || stuck < send_stall_timeout_) {
    return false;
  }
  const absl::Status stalled = PeerStoppedReadingError(peer_address_, pending_bytes_.load(), stuck);
  LOCUS_LOG(WARNING) << "closing shared-memory connection: " << stalled.message();
  owner_->Close(stalled);
  return true;
}

}  // namespace locus::internal
