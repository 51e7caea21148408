// Every blocking wait of a caller ends at once when what it waits for can no
// longer come: a Cancel() from another thread, its deadline, the server going
// away. The socket readers' own periodic wake-up is set to an hour here, so a
// missing wake-up fails by watchdog instead of passing a second late.
//
// To be sure the wait has begun (a Cancel before it would prove nothing),
// the tests wait until the waiting thread sleeps in the kernel
// (/proc/self/task/<tid>/stat says 'S').
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "conformance_fixture.h"
#include "transports/socket/stream_connection.h"

namespace locus::conformance {
namespace {

pid_t CurrentThreadId() { return static_cast<pid_t>(syscall(SYS_gettid)); }

// The scheduler state of thread `tid` of this process ('R', 'S', ...).
char ThreadState(pid_t tid) {
  std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() ? '?' : line[paren + 2];
}

// Waits (watchdog-bounded) until thread `tid` has been asleep for three
// looks in a row, i.e. it blocks rather than passing through a lock.
bool AwaitAsleep(const std::atomic<pid_t>& tid) {
  int asleep = 0;
  return Eventually([&] {
    const pid_t id = tid.load();
    asleep = id != 0 && ThreadState(id) == 'S' ? asleep + 1 : 0;
    return asleep >= 3;
  });
}

// Runs `wait` on a thread of its own; Join() fails the test (and aborts:
// the thread would otherwise block the binary for an hour) if it does not
// return within the watchdog after the event that must end it.
class Waiter {
 public:
  template <typename Fn>
  explicit Waiter(Fn wait)
      : thread_([this, wait]() mutable {
          tid_ = CurrentThreadId();
          wait();
          returned_.Notify();
        }) {}
  // A test that stopped early (a failed ASSERT) still joins the thread.
  ~Waiter() {
    if (thread_.joinable()) Join("the end of the test");
  }
  const std::atomic<pid_t>& tid() const { return tid_; }
  void Join(const char* event) {
    if (!returned_.WaitForNotificationWithTimeout(kWatchdog)) {
      ADD_FAILURE() << "a blocked wait did not end after " << event;
      std::abort();
    }
    thread_.join();
  }

 private:
  std::atomic<pid_t> tid_{0};
  absl::Notification returned_;
  std::thread thread_;
};

template <typename ConfigT>
class WakeUpConformance : public TransportConformance<ConfigT> {
 public:
  void SetUp() override {
    internal::SetSocketReaderSleepForTesting(absl::Hours(1));
    TransportConformance<ConfigT>::SetUp();
  }
  void TearDown() override { internal::SetSocketReaderSleepForTesting(absl::Seconds(1)); }
};

// Unary calls run on every transport; streams on the reliable ones.
using UnaryKinds =
    ::testing::Types<Config<UnixSocket, 0>, Config<TcpIpv4, 0>, Config<SharedMemory, 0>,
                     Config<InProcess, 4>, Config<UdpIpv4, 0>, Config<UnixSocket, 4>,
                     Config<TcpIpv4, 0, /*kSocketSpin=*/false>>;
using StreamKinds =
    ::testing::Types<Config<UnixSocket, 0>, Config<TcpIpv4, 0>, Config<SharedMemory, 0>,
                     Config<InProcess, 0>, Config<UnixSocket, 4>,
                     Config<TcpIpv4, 0, /*kSocketSpin=*/false>>;

template <typename ConfigT>
class UnaryWakeUp : public WakeUpConformance<ConfigT> {};
TYPED_TEST_SUITE(UnaryWakeUp, UnaryKinds, ConfigNames);

template <typename ConfigT>
class StreamWakeUp : public WakeUpConformance<ConfigT> {};
TYPED_TEST_SUITE(StreamWakeUp, StreamKinds, ConfigNames);

TYPED_TEST(UnaryWakeUp, CancelEndsABlockedSynchronousCall) {
  Cancellation cancel;
  CallOptions options = Watchdog();
  options.cancellation = cancel;
  absl::StatusOr<WaitReply> reply;
  Waiter waiter([&] {
    WaitRequest request;
    request.set_max_wait_ms(absl::ToInt64Milliseconds(kWatchdog));
    reply = this->stub_->WaitForCancel(request, options);
  });
  ASSERT_TRUE(AwaitAsleep(waiter.tid()));
  cancel.Cancel();
  waiter.Join("Cancel()");
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kCancelled) << reply.status();
}

TYPED_TEST(StreamWakeUp, CancelEndsABlockedRead) {
  Cancellation cancel;
  CallOptions options = Watchdog();
  options.cancellation = cancel;
  ClientReaderWriter<EchoRequest, EchoReply> chat = OpenChat(*this->stub_, options);
  bool read = true;
  Waiter waiter([&] {
    EchoReply reply;
    read = chat.Read(&reply);
  });
  ASSERT_TRUE(AwaitAsleep(waiter.tid()));
  cancel.Cancel();
  waiter.Join("Cancel()");
  EXPECT_FALSE(read);
  EXPECT_EQ(chat.Finish().code(), absl::StatusCode::kCancelled);
}

TYPED_TEST(StreamWakeUp, TheDeadlineEndsABlockedRead) {
  // Long enough to open the chat and see the Read asleep on a busy machine.
  ClientReaderWriter<EchoRequest, EchoReply> chat =
      OpenChat(*this->stub_, CallOptions::WithTimeout(absl::Seconds(3)));
  bool read = true;
  Waiter waiter([&] {
    EchoReply reply;
    read = chat.Read(&reply);
  });
  ASSERT_TRUE(AwaitAsleep(waiter.tid()));
  waiter.Join("the deadline");
  EXPECT_FALSE(read);
  EXPECT_EQ(chat.Finish().code(), absl::StatusCode::kDeadlineExceeded);
}

TYPED_TEST(StreamWakeUp, ServerShutdownEndsABlockedRead) {
  ClientReaderWriter<EchoRequest, EchoReply> chat = OpenChat(*this->stub_, Watchdog());
  bool read = true;
  Waiter waiter([&] {
    EchoReply reply;
    read = chat.Read(&reply);
  });
  ASSERT_TRUE(AwaitAsleep(waiter.tid()));
  this->server_->Shutdown(absl::Now());  // past its deadline at once: connections close
  waiter.Join("the server's shutdown");
  EXPECT_FALSE(read);
  EXPECT_FALSE(chat.Finish().ok());
}

}  // namespace
}  // namespace locus::conformance
