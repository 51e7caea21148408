#include "internal/inproc_connection.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace locus::internal {
namespace {

// State shared by the two ends. Side i's inbox holds frames for side i.
class InprocPipe {
 public:
  InprocPipe(uint64_t max_receive_0, uint64_t max_receive_1) {
    sides_[0].max_receive = max_receive_0;
    sides_[1].max_receive = max_receive_1;
  }

  void Start(int side, FrameSink* sink) {
    {
      absl::MutexLock lock(&mu_);
      sides_[side].sink = sink;
    }
    Deliver(side);
  }

  absl::Status Send(int from, Frame frame) {
    const int to = 1 - from;
    {
      absl::MutexLock lock(&mu_);
      if (closed_) return absl::UnavailableError("connection closed");
      Side& peer = sides_[to];
      const bool oversize = frame.header.payload_length > peer.max_receive;
      if (oversize) {
        frame.payload.clear();
        frame.fds.clear();  // the frame is not delivered: nor are its descriptors
      }
      peer.inbox.push_back(Item{std::move(frame), oversize});
    }
    Deliver(to);
    return absl::OkStatus();
  }

  void Close(const absl::Status& reason) {
    {
      absl::MutexLock lock(&mu_);
      if (closed_) return;
      closed_ = true;
      reason_ = reason;
    }
    Deliver(0);
    Deliver(1);
  }

  // Waits until `side` has received OnClosed, delivering it here if nobody
  // else is delivering; returns at once on the thread that is delivering.
  // Called after Close. On the delivering thread itself (the sink released
  // its connection from inside a callback), delivers OnClosed now and
  // detaches the sink so that the delivery loop below stops touching it.
  void Finish(int side) {
    Deliver(side);
    absl::MutexLock lock(&mu_);
    Side& s = sides_[side];
    if (s.sink == nullptr) return;
    if (s.deliverer == std::this_thread::get_id()) {
      FrameSink* sink = s.sink;
      s.sink = nullptr;
      if (!s.closed_started) {
        s.closed_started = true;
        s.closed_delivered = true;
        absl::Status reason = reason_;
        mu_.Unlock();
        sink->OnClosed(reason);
        mu_.Lock();
      }
      return;
    }
    auto done = [&s]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return s.closed_delivered; };
    mu_.Await(absl::Condition(&done));
  }

 private:
  struct Item {
    Frame frame;
    bool oversize;
  };
  struct Side {
    uint64_t max_receive = 0;
    FrameSink* sink = nullptr;
    std::deque<Item> inbox;
    bool delivering = false;
    std::thread::id deliverer;
    bool closed_started = false;    // OnClosed called (maybe still running)
    bool closed_delivered = false;  // OnClosed returned
  };

  // Delivers side's inbox, then OnClosed once closed, unless another thread
  // is at it (it will see what was added meanwhile).
  void Deliver(int side) {
    absl::MutexLock lock(&mu_);
    Side& s = sides_[side];
    if (s.sink == nullptr || s.delivering || s.closed_delivered) return;
    s.delivering = true;
    s.deliverer = std::this_thread::get_id();
    for (;;) {
      if (s.sink == nullptr || s.closed_started) break;  // detached by Finish, or closing
      if (!s.inbox.empty()) {
        Item item = std::move(s.inbox.front());
        s.inbox.pop_front();
        // Only this (the delivering) thread detaches the sink (Finish).
        FrameSink* const sink = s.sink;
        mu_.Unlock();
        if (item.oversize) {
          sink->OnOversizeFrame(item.frame.header);
        } else {
          sink->OnFrame(item.frame);
        }
        item.frame.fds.clear();  // those the sink left (contract 12)
        mu_.Lock();
        continue;
      }
      if (closed_ && !s.closed_started) {
        s.closed_started = true;  // before the call: a Finish inside it must not deliver again
        absl::Status reason = reason_;
        FrameSink* const sink = s.sink;
        mu_.Unlock();
        sink->OnClosed(reason);
        mu_.Lock();
        s.closed_delivered = true;
      }
      break;
    }
    s.delivering = false;
    s.deliverer = std::thread::id();
  }

  absl::Mutex mu_;
  Side sides_[2] ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status reason_ ABSL_GUARDED_BY(mu_);
};

class InprocConnection final : public Connection {
 public:
  InprocConnection(std::shared_ptr<InprocPipe> pipe, int side, PeerInfo peer)
      : pipe_(std::move(pipe)), side_(side), peer_(std::move(peer)) {}

  ~InprocConnection() override {
    pipe_->Close(absl::UnavailableError("connection released"));
    pipe_->Finish(side_);
  }

  void Start(FrameSink* sink) override { pipe_->Start(side_, sink); }

  absl::Status Send(const FrameHeader& header, absl::string_view meta, absl::string_view payload,
                    absl::Time /*deadline*/) override {
    Frame frame;
    frame.header = header;
    frame.meta.assign(meta.data(), meta.size());
    frame.payload.assign(payload.data(), payload.size());
    return pipe_->Send(side_, std::move(frame));
  }

  bool CanPassFds() const override { return true; }

  // The frame carries close-on-exec duplicates of `fds`, made here: the
  // caller's stay its own. Frames never delivered (closed first) close
  // theirs with the pipe.
  absl::Status SendWithFds(const FrameHeader& header, absl::string_view meta,
                           absl::string_view payload, absl::Span<const int> fds,
                           absl::Time deadline) override {
    if (fds.empty()) return Send(header, meta, payload, deadline);
    absl::Status valid = ValidateFdsToSend(fds);
    if (!valid.ok()) return valid;
    Frame frame;
    frame.fds.reserve(fds.size());
    for (int fd : fds) {
      const int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
      if (copy < 0) {
        return absl::ResourceExhaustedError(
            absl::StrCat("cannot duplicate file descriptor ", fd, ": ", std::strerror(errno)));
      }
      frame.fds.emplace_back(copy);
    }
    frame.header = header;
    frame.meta.assign(meta.data(), meta.size());
    frame.payload.assign(payload.data(), payload.size());
    return pipe_->Send(side_, std::move(frame));
  }

  void Close(const absl::Status& reason) override { pipe_->Close(reason); }

  const PeerInfo& peer() const override { return peer_; }

 private:
  const std::shared_ptr<InprocPipe> pipe_;
  const int side_;
  const PeerInfo peer_;
};

}  // namespace

std::pair<std::unique_ptr<Connection>, std::unique_ptr<Connection>> MakeInprocPair(
    InprocEnd client, InprocEnd server) {
  auto pipe = std::make_shared<InprocPipe>(client.max_receive_message_size,
                                             server.max_receive_message_size);
  return {std::make_unique<InprocConnection>(pipe, 0, std::move(client.peer)),
          std::make_unique<InprocConnection>(pipe, 1, std::move(server.peer))};
}

}  // namespace locus::internal
