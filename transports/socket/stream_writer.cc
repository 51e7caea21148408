#include "transports/socket/stream_writer.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/timer_queue.h"
#include "transports/common/copy_bytes.h"
#include "transports/common/frame_fds.h"
#include "transports/common/send_stall.h"

namespace locus::internal {

StreamWriter::StreamWriter(int fd, const PeerInfo& peer, const TransportOptions& options,
                           const CloseState& close, Owner* owner)
    : fd_(fd),
      peer_address_(peer.remote_address),
      send_stall_timeout_(options.send_stall_timeout),
      max_send_queue_bytes_(options.max_send_queue_bytes),
      close_(close),
      owner_(owner) {}

namespace {

// sendmsg's errors that concern the descriptors attached, not the socket:
// nothing was sent, and the connection can go on.
absl::Status FdSendError(int err, const std::string& peer_address) {
  if (err == EBADF) {
    return absl::InvalidArgumentError("a file descriptor to send was closed during the call");
  }
  return absl::ResourceExhaustedError(absl::StrCat("cannot pass file descriptors to ",
                                                   peer_address, ": ", std::strerror(err)));
}

bool IsFdSendErrno(int err) {
  return err == ETOOMANYREFS || err == EBADF || err == ENOMEM || err == ENOBUFS;
}

}  // namespace

absl::Status StreamWriter::Send(const FrameHeader& header, absl::string_view meta,
                                absl::string_view payload, absl::Span<const int> fds,
                                absl::Time deadline) {
  const size_t total = sizeof(header) + meta.size() + payload.size();
  absl::MutexLock lock(&mu_);
  if (write_closed_) return close_.ClosedError();
  if (corked_ == this) {
    // A frame with descriptors is never held back: its sendmsg carries them.
    if (fds.empty() && total <= kCorkedFrameMaxBytes &&
        queued_bytes() + total <= kCorkedQueueMaxBytes) {
      AppendToQueue(header, meta, payload, 0);
      corked_output_ = true;
      return absl::OkStatus();
    }
    // Too much to hold back: write what this batch queued, then this
    // frame as usual (directly if the socket took the queue).
    if (!want_write_.load() && WriteQueuedLocked() && write_closed_) {
      return absl::UnavailableError("connection closed");
    }
  }
  if (queued_bytes() == 0) {
    iovec iov[3] = {{const_cast<FrameHeader*>(&header), sizeof(header)},
                    {const_cast<char*>(meta.data()), meta.size()},
                    {const_cast<char*>(payload.data()), payload.size()}};
    ssize_t n;
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = 3;
    // The descriptors go with the frame's first byte.
    FdsToSend control;
    control.AttachTo(fds, &msg);
    do {
      // No SIGPIPE if the peer is gone; never block (the fd is blocking
      // for callers' receives, see StreamConnection::Create).
      n = sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN) {
      // An error means no byte was sent: one about the descriptors leaves
      // the connection as it was.
      if (!fds.empty() && IsFdSendErrno(errno)) return FdSendError(errno, peer_address_);
      std::string why = absl::StrCat("write to ", peer_address_, " failed: ", std::strerror(errno));
      write_closed_ = true;
      mu_.Unlock();
      owner_->Close(absl::UnavailableError(why));
      mu_.Lock();
      return absl::UnavailableError(why);
    }
    size_t written = n < 0 ? 0 : static_cast<size_t>(n);
    if (written == total) return absl::OkStatus();
    // Descriptors went with the first byte, if it was sent; otherwise they
    // wait in the queue with it.
    std::vector<OwnedFd> copies;
    if (written == 0 && !fds.empty()) {
      absl::StatusOr<std::vector<OwnedFd>> duplicated = DuplicateFds(fds);
      if (!duplicated.ok()) return duplicated.status();  // nothing sent
      copies = *std::move(duplicated);
    }
    AppendToQueue(header, meta, payload, written, std::move(copies));
    ArmWrite();
    return absl::OkStatus();
  }
  // Bytes are queued already: this frame goes behind them.
  if (loop_ == nullptr || !loop_->InLoopThread()) {  // not started: never the loop
    const bool with_fds = !fds.empty();
    auto room = [this, with_fds]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return write_closed_ || (queued_bytes() < max_send_queue_bytes_ &&
                               (!with_fds || queued_fds_ < kMaxQueuedFds));
    };
    // The stall is counted from the peer's last progress, not from when
    // this sender started waiting: a peer that reads slowly while other
    // senders keep the queue full is not stalled.
    for (;;) {
      const absl::Time stall = last_progress_ + send_stall_timeout_;
      if (mu_.AwaitWithDeadline(absl::Condition(&room), std::min(deadline, stall))) break;
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError("deadline passed while the peer was not reading");
      }
      if (absl::Now() < last_progress_ + send_stall_timeout_) continue;  // it moved
      const absl::Status stalled =
          PeerStoppedReadingError(peer_address_, queued_bytes(), send_stall_timeout_);
      mu_.Unlock();
      CloseStalled(stalled);
      mu_.Lock();
      return stalled;
    }
    if (write_closed_) return absl::UnavailableError("connection closed");
  }
  std::vector<OwnedFd> copies;
  if (!fds.empty()) {
    absl::StatusOr<std::vector<OwnedFd>> duplicated = DuplicateFds(fds);
    if (!duplicated.ok()) return duplicated.status();  // nothing queued
    copies = *std::move(duplicated);
  }
  AppendToQueue(header, meta, payload, 0, std::move(copies));
  // The loop may have drained the queue (and dropped EPOLLOUT) while we
  // waited. Write now rather than only arming EPOLLOUT: with
  // edge-triggered interest, a socket that stayed writable gives no new
  // edge, and the queue would wait for the stall timer. Arm only if the
  // socket refused bytes (a later edge is then certain).
  if (!want_write_.load() && !WriteQueuedLocked()) ArmWrite();
  return absl::OkStatus();
}

bool StreamWriter::HasQueuedOutput() const {
  absl::MutexLock lock(&mu_);
  return queued_bytes() != 0;
}

void StreamWriter::AppendToQueue(const FrameHeader& header, absl::string_view meta,
                                 absl::string_view payload, size_t skip, std::vector<OwnedFd> fds) {
  absl::string_view parts[3] = {
      absl::string_view(reinterpret_cast<const char*>(&header), sizeof(header)), meta, payload};
  if (!fds.empty()) {
    queued_fds_ += fds.size();
    attachments_.push_back(Attachment{queue_pos_ + queued_bytes(), std::move(fds)});
  }
  if (queued_bytes() == 0) {
    last_progress_ = absl::Now();
  } else if (out_offset_ >= out_queue_.size() / 2) {
    // Drop what was sent before growing, so that a queue that never
    // quite empties does not keep (and copy) everything it ever held.
    out_queue_.erase(0, out_offset_);
    out_offset_ = 0;
  }
  for (absl::string_view part : parts) {
    size_t drop = std::min(skip, part.size());
    skip -= drop;
    AppendBytes(&out_queue_, part.data() + drop, part.size() - drop);
  }
}

// Queued output must make progress: a peer that stops reading while this
// side (the loop thread, which never blocks on a send) keeps queueing
// replies would otherwise grow the queue without bound. Checked by a timer
// while anything is queued; the connection is closed after
// send_stall_timeout without a byte taken.
void StreamWriter::ScheduleStallCheck(absl::Time when) {
  stall_check_pending_ = true;
  TimerQueue::Get().Schedule(when, [weak = weak_self_] {
    if (std::shared_ptr<StreamWriter> self = weak.lock()) self->CheckStall();
  });
}

void StreamWriter::CheckStall() {
  absl::Status stalled;
  {
    absl::MutexLock lock(&mu_);
    stall_check_pending_ = false;
    if (queued_bytes() == 0 || write_closed_) return;
    const absl::Time due = last_progress_ + send_stall_timeout_;
    if (absl::Now() < due) {
      ScheduleStallCheck(due);
      return;
    }
    stalled = PeerStoppedReadingError(peer_address_, queued_bytes(), absl::Now() - last_progress_);
  }
  CloseStalled(stalled);
}

void StreamWriter::CloseStalled(const absl::Status& stalled) {
  LOCUS_LOG(WARNING) << "closing connection: " << stalled.message();
  // Reset rather than close in order: a TCP FIN would wait behind the
  // queued bytes the peer does not take, and the peer would never learn.
  linger reset{1, 0};
  (void)setsockopt(fd_, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
  owner_->Close(stalled);
}

void StreamWriter::ArmWrite() {
  if (!stall_check_pending_) ScheduleStallCheck(last_progress_ + send_stall_timeout_);
  want_write_.store(true);
  mu_.Unlock();
  owner_->UpdateInterest();
  mu_.Lock();
}

bool StreamWriter::WriteQueuedLocked() {
  while (queued_bytes() > 0) {
    size_t length = queued_bytes();
    // Descriptors go with their frame's first byte, in a sendmsg that
    // starts there and ends before the next frame with descriptors.
    bool attach = false;
    if (!attachments_.empty()) {
      attach = attachments_.front().at == queue_pos_;
      const size_t next = attach ? 1 : 0;
      if (next < attachments_.size()) {
        length = std::min<uint64_t>(length, attachments_[next].at - queue_pos_);
      }
    }
    iovec iov{out_queue_.data() + out_offset_, length};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    FdsToSend control;
    int raw[kMaxFdsPerFrame];
    if (attach) {
      const std::vector<OwnedFd>& fds = attachments_.front().fds;
      for (size_t i = 0; i < fds.size(); ++i) raw[i] = fds[i].get();
      control.AttachTo(absl::MakeConstSpan(raw, fds.size()), &msg);
    }
    ssize_t n = sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return false;
    if (n <= 0) {
      // The socket still works after a refusal of the descriptors, so the
      // reader would not notice: close the connection (the frame cannot go
      // without them, nor can later ones skip it).
      if (n < 0 && attach && IsFdSendErrno(errno)) CloseLater(FdSendError(errno, peer_address_));
      write_closed_ = true;
      break;
    }
    out_offset_ += static_cast<size_t>(n);
    queue_pos_ += static_cast<uint64_t>(n);
    last_progress_ = absl::Now();
    if (attach) {
      // The kernel holds its own references now: close the duplicates.
      queued_fds_ -= attachments_.front().fds.size();
      attachments_.pop_front();
    }
  }
  DropQueueLocked();
  return true;
}

void StreamWriter::DropQueueLocked() {
  queue_pos_ += queued_bytes();
  out_queue_.clear();
  out_offset_ = 0;
  attachments_.clear();
  queued_fds_ = 0;
}

void StreamWriter::CloseLater(const absl::Status& reason) {
  LOCUS_LOG(WARNING) << "closing connection to " << peer_address_ << ": " << reason.message();
  TimerQueue::Get().Schedule(absl::Now(), [weak = weak_self_, reason] {
    if (std::shared_ptr<StreamWriter> self = weak.lock()) self->owner_->Close(reason);
  });
}

void StreamWriter::FlushCorkedOutput() {
  absl::MutexLock lock(&mu_);
  if (!corked_output_) return;
  corked_output_ = false;
  if (want_write_.load()) return;  // the loop writes the queue on EPOLLOUT
  if (!WriteQueuedLocked()) ArmWrite();
}

void StreamWriter::FlushQueue() {
  absl::MutexLock lock(&mu_);
  if (!WriteQueuedLocked()) return;
  if (want_write_.exchange(false)) {
    mu_.Unlock();
    owner_->UpdateInterest();
    mu_.Lock();
  }
}

void StreamWriter::CloseForWriting() {
  absl::MutexLock lock(&mu_);
  corked_output_ = false;
  (void)WriteQueuedLocked();
  write_closed_ = true;
  // What the socket did not take is never written: its descriptors close.
  attachments_.clear();
  queued_fds_ = 0;
}

void StreamWriter::MarkClosed() {
  absl::MutexLock lock(&mu_);
  write_closed_ = true;
  attachments_.clear();
  queued_fds_ = 0;
}

}  // namespace locus::internal
