// ConnectionCore's liveness: keepalive PINGs (a peer that stops answering
// is found out and its connection closed, failing its calls with
// UNAVAILABLE), and a server's limits on how long a connection may sit idle
// or live (GOAWAY, then a graceful drain). All of it runs on the
// process-wide timer thread, never on the call path: the reader only counts
// the frames it delivers (frames_received_), and each check compares that
// count with the one it saw last.
//
// Timers hold the core weakly and are cancelled when it closes; each
// reschedules itself under mu_ unless the connection has closed, so none
// outlives the closure by more than one run.
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "absl/random/distributions.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "internal/connection_core.h"

namespace locus::internal {
namespace {

// How often the idle and keepalive limits are checked: a quarter of the
// limit, so that a limit L is noticed after L to 1.25 L.
absl::Duration CheckPeriod(absl::Duration limit) {
  return std::max(limit / 4, absl::Milliseconds(1));
}

// How often a draining connection looks whether its calls are done.
constexpr absl::Duration kDrainCheck = absl::Milliseconds(10);
// The payload of a drain's PING (keepalive PINGs count up from 1).
constexpr uint64_t kDrainPing = uint64_t{1} << 63;
// How long a drain waits for calls its final GOAWAY covers that have not
// arrived (ids taken before the peer read the first GOAWAY, sent after);
// an id taken and never sent (its send failed) holds the closure this long.
constexpr absl::Duration kDrainGapWait = absl::Seconds(5);

bool Enabled(absl::Duration limit) {
  return limit != absl::InfiniteDuration() && limit > absl::ZeroDuration();
}

}  // namespace

void ConnectionCore::ScheduleLivenessLocked(absl::Time when, void (ConnectionCore::*check)(),
                                            TimerQueue::Id* slot) {
  if (state_.phase() == ConnectionState::Phase::kClosed) return;
  std::weak_ptr<ConnectionCore> weak = weak_from_this();
  *slot = TimerQueue::Get().Schedule(when, [weak, check] {
    if (std::shared_ptr<ConnectionCore> self = weak.lock()) ((*self).*check)();
  });
}

void ConnectionCore::StartLiveness() {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  if (Enabled(options_.keepalive_time)) {
    ScheduleLivenessLocked(now + CheckPeriod(options_.keepalive_time), &ConnectionCore::KeepaliveCheck,
                           &keepalive_timer_);
  }
  if (Enabled(options_.max_idle)) {
    idle_.idle_since = now;
    ScheduleLivenessLocked(now + CheckPeriod(options_.max_idle), &ConnectionCore::IdleCheck, &idle_timer_);
  }
  if (Enabled(options_.max_age)) {
    // +-10%, as gRPC: connections made together do not all go together.
    thread_local absl::BitGen random;
    const absl::Duration age = options_.max_age * absl::Uniform(random, 0.9, 1.1);
    ScheduleLivenessLocked(now + age, &ConnectionCore::AgeReached, &age_timer_);
  }
}

void ConnectionCore::StopLiveness() {
  TimerQueue::Id timers[3];
  {
    absl::MutexLock lock(&mu_);
    timers[0] = std::exchange(keepalive_timer_, 0);
    timers[1] = std::exchange(idle_timer_, 0);
    timers[2] = std::exchange(age_timer_, 0);
  }
  for (TimerQueue::Id id : timers) {
    if (id != 0) TimerQueue::Get().Cancel(id);
  }
}

size_t ConnectionCore::CallsInProgressLocked() const {
  return pending_.size() + streams_.size() + serving_.size() +
         inline_serving_.load(std::memory_order_acquire);
}

bool ConnectionCore::CarriesObjectsLocked() const {
  if (!exported_to_peer_.empty()) return true;
  for (const auto& [id, import] : imports_) {
    if (!import.expired()) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Keepalive

void ConnectionCore::KeepaliveCheck() {
  const absl::Time now = absl::Now();
  const uint64_t frames = frames_received_.load(std::memory_order_relaxed);
  enum class Action { kNone, kPing, kClose, kStopReads } action = Action::kNone;
  {
    absl::MutexLock lock(&mu_);
    keepalive_timer_ = 0;  // this run; cleared first so that a closure now cancels nothing of ours
    if (state_.phase() == ConnectionState::Phase::kClosed) return;
    KeepaliveState& k = keepalive_;
    if (frames != k.frames_seen) {
      // The peer spoke: whatever PING was out is answered.
      k.frames_seen = frames;
      k.quiet_checks = 0;
      if (k.ping_outstanding) {
        k.ping_outstanding = false;
        if (k.raised_reads) action = Action::kStopReads;
        k.raised_reads = false;
      }
    } else if (k.ping_outstanding) {
      // An inline handler holds this side's reader: the answer may be
      // waiting unread. Only a reader that was free may conclude.
      if (now >= k.ping_deadline && inline_serving_.load(std::memory_order_acquire) == 0) {
        action = Action::kClose;
      }
    } else if ((k.quiet_checks = std::min(k.quiet_checks + 1, 4)) >= 4 && state_.handshake_succeeded() &&
               (options_.keepalive_without_calls || CallsInProgressLocked() > 0)) {
      k.ping_outstanding = true;
      k.ping_deadline = now + options_.keepalive_timeout;
      k.raised_reads = on_demand_background_reads_;
      action = Action::kPing;
    }
    if (action != Action::kClose) {
      // Never at a time already past: a PING outstanding past its deadline
      // behind an inline handler is looked at again a period later (a
      // timer due in the past would run again at once, ahead of every
      // other timer of the process, for as long as the handler runs).
      absl::Time next = now + CheckPeriod(options_.keepalive_time);
      if (k.ping_outstanding && k.ping_deadline > now) next = std::min(next, k.ping_deadline);
      ScheduleLivenessLocked(next, &ConnectionCore::KeepaliveCheck, &keepalive_timer_);
    }
  }
  switch (action) {
    case Action::kNone:
      return;
    case Action::kStopReads:
      connection_->AdjustBackgroundReads(-1);
      return;
    case Action::kPing: {
      // A plain client reads only while it waits for something: the
      // answer must be read even if nobody does.
      if (on_demand_background_reads_) connection_->AdjustBackgroundReads(+1);
      const uint64_t number = keepalive_pings_sent_.fetch_add(1, std::memory_order_relaxed) + 1;
      char payload[sizeof(number)];
      std::memcpy(payload, &number, sizeof(number));
      FrameHeader ping = FrameHeader::Make(FrameType::kPing, 0, 0);
      ping.payload_length = sizeof(payload);
      // Never waits for room (the timer thread is shared): a PING that
      // cannot even be queued means a peer that takes nothing, which the
      // missing answer reports.
      (void)connection_->Send(ping, {}, absl::string_view(payload, sizeof(payload)), absl::Now());
      return;
    }
    case Action::kClose: {
      const absl::Status reason = absl::UnavailableError(absl::StrCat(
          "keepalive: no answer from ", peer().remote_address, " within ",
          absl::FormatDuration(options_.keepalive_timeout), " of a PING"));
      LOCUS_LOG(WARNING) << "closing the connection to " << peer().remote_address << ": "
                         << reason.message();
      Close(reason);
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// Idle and age limits, and the drain that follows this side's GOAWAY

void ConnectionCore::IdleCheck() {
  const absl::Time now = absl::Now();
  absl::Status idle;
  {
    absl::MutexLock lock(&mu_);
    idle_timer_ = 0;
    if (state_.phase() == ConnectionState::Phase::kClosed || draining_) return;
    IdleState& i = idle_;
    const bool busy = !state_.handshake_succeeded() || CallsInProgressLocked() > 0 || CarriesObjectsLocked() ||
                      next_call_id_ != i.next_call_id || last_peer_call_id_ != i.last_peer_call_id;
    i.next_call_id = next_call_id_;
    i.last_peer_call_id = last_peer_call_id_;
    if (busy) {
      i.idle_since = now;
    } else if (now - i.idle_since >= options_.max_idle) {
      idle = absl::UnavailableError(
          absl::StrCat("connection idle for ", absl::FormatDuration(options_.max_idle)));
    }
    if (idle.ok()) {
      ScheduleLivenessLocked(now + CheckPeriod(options_.max_idle), &ConnectionCore::IdleCheck, &idle_timer_);
    }
  }
  // Without a grace period: nothing runs, and what the peer sends before
  // it reads the GOAWAY is refused as not processed.
  if (!idle.ok()) BeginDrain(idle, absl::InfiniteFuture());
}

void ConnectionCore::AgeReached() {
  const absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    age_timer_ = 0;
    if (state_.phase() == ConnectionState::Phase::kClosed || draining_) return;
    if (CarriesObjectsLocked() || !state_.handshake_succeeded()) {
      // References live and die with their connection (and a handshake
      // has a deadline of its own): look again later.
      ScheduleLivenessLocked(now + CheckPeriod(options_.max_age), &ConnectionCore::AgeReached, &age_timer_);
      return;
    }
  }
  const absl::Time deadline = options_.max_age_grace == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : now + options_.max_age_grace;
  BeginDrain(absl::UnavailableError(absl::StrCat("connection reached its maximum age (",
                                                 absl::FormatDuration(options_.max_age), ")")),
             deadline);
}

// A drain announces itself twice, as HTTP/2 servers do: call ids need not
// reach this side in the order they were taken (concurrent callers), so a
// GOAWAY naming the highest id received so far could leave out a call that
// is still on its way, which this side would then close on. The first
// GOAWAY names no call (the highest id there is): the peer starts no more
// calls here, refuses none. A PING follows it; its answer comes after every
// call the peer sent before it read the GOAWAY, and then the final GOAWAY
// names the highest id received. A call whose id was taken before that
// GOAWAY was read but which was sent after the answer may still come, below
// that id: the drain waits (kDrainGapWait at most) until as many calls
// arrived as the final GOAWAY covers ids.
void ConnectionCore::BeginDrain(const absl::Status& reason, absl::Time deadline) {
  TimerQueue::Id age = 0;
  {
    absl::MutexLock lock(&mu_);
    if (draining_ || state_.phase() == ConnectionState::Phase::kClosed) return;
    draining_ = true;
    announcing_drain_ = true;
    drain_reason_ = reason;
    drain_deadline_ = deadline;
    age = std::exchange(age_timer_, 0);  // an idle drain makes the age moot
    ScheduleLivenessLocked(absl::Now() + options_.drain_ping_timeout, &ConnectionCore::DrainPingTimedOut, &age_timer_);
  }
  if (age != 0) TimerQueue::Get().Cancel(age);
  wire::GoAway announce;
  announce.set_last_processed_call_id(std::numeric_limits<uint64_t>::max());
  announce.set_code(static_cast<int>(reason.code()));
  announce.set_reason(std::string(reason.message()));
  // Both frames are queued or dropped, never waited for room (the timer
  // thread is shared): a peer that takes nothing answers no PING either,
  // and the drain goes on after drain_ping_timeout.
  (void)SendControlFrame(FrameType::kGoAway, 0, &announce, absl::Now());
  // Before the PING: its answer may be delivered before Send returns.
  awaiting_drain_pong_.store(true, std::memory_order_release);
  char payload[sizeof(kDrainPing)];
  std::memcpy(payload, &kDrainPing, sizeof(payload));
  FrameHeader ping = FrameHeader::Make(FrameType::kPing, 0, 0);
  ping.payload_length = sizeof(payload);
  (void)connection_->Send(ping, {}, absl::string_view(payload, sizeof(payload)), absl::Now());
}

void ConnectionCore::HandleDrainPong(const Frame& frame) {
  uint64_t value = 0;
  const absl::string_view payload = frame.payload_bytes();
  if (payload.size() != sizeof(value)) return;
  std::memcpy(&value, payload.data(), sizeof(value));
  if (value == kDrainPing) FinishAnnouncingDrain();
}

void ConnectionCore::DrainPingTimedOut() {
  {
    absl::MutexLock lock(&mu_);
    age_timer_ = 0;  // this run
  }
  FinishAnnouncingDrain();
}

void ConnectionCore::FinishAnnouncingDrain() {
  absl::Status reason;
  TimerQueue::Id timer = 0;
  {
    absl::MutexLock lock(&mu_);
    if (!announcing_drain_) return;
    announcing_drain_ = false;
    awaiting_drain_pong_.store(false, std::memory_order_release);
    timer = std::exchange(age_timer_, 0);
    reason = drain_reason_;
  }
  if (timer != 0) TimerQueue::Get().Cancel(timer);
  SendGoAway(reason);
  {
    absl::MutexLock lock(&mu_);
    // The peer's ids are odd from 1 (it connected) or even from 2.
    drain_expected_requests_ =
        options_.connecting_side ? goaway_last_processed_ / 2 : (goaway_last_processed_ + 1) / 2;
    drain_gap_deadline_ = absl::Now() + kDrainGapWait;
  }
  DrainCheck();
}

void ConnectionCore::DrainCheck() {
  const absl::Time now = absl::Now();
  // What is still queued (a reply, the GOAWAY) leaves first, within the
  // deadline: closing drops it.
  const bool queued = has_queued_output();
  absl::Status close;
  bool calls_done = false;
  {
    absl::MutexLock lock(&mu_);
    age_timer_ = 0;
    if (state_.phase() == ConnectionState::Phase::kClosed) return;
    calls_done = CallsInProgressLocked() == 0 &&
                 (peer_requests_ >= drain_expected_requests_ ||
                  now >= drain_gap_deadline_);
    if ((!calls_done || queued) && now < drain_deadline_) {
      ScheduleLivenessLocked(std::min(now + kDrainCheck, drain_deadline_), &ConnectionCore::DrainCheck,
                             &age_timer_);
      return;
    }
    close = drain_reason_;
  }
  if (!calls_done) {
    LOCUS_LOG(WARNING) << "closing the connection to " << peer().remote_address
                       << " with calls in progress: " << close.message() << " and its grace period ended";
  }
  Close(close);
}

}  // namespace locus::internal
