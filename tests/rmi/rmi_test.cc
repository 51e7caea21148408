// Remote objects end to end (locus/object.h, locus/fd.h), for every place
// the owner can live: in this process (direct calls), and in another
// process over unix, shm and tcp. The other process is locus_rmi_peer
// (rmi_peer_main.cc); third-party tests start a second one.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "internal/object_registry.h"
#include "locus/locus.h"
#include "locus/object.h"
#include "rmi_services.h"
#include "tests/testing/test_util.h"

namespace rmitest {
namespace {

// Sanitizers keep freed memory in quarantine (ASan: up to 256 MiB): the
// resident size then says nothing about leaks. The counts (live objects,
// exports, descriptors) are checked in every build.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kResidentSizeMeansSomething = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kResidentSizeMeansSomething = false;
#else
constexpr bool kResidentSizeMeansSomething = true;
#endif
#else
constexpr bool kResidentSizeMeansSomething = true;
#endif

using ::locus::testing::ChildProcess;
using ::locus::testing::kWatchdog;
using ::locus::testing::TempDir;

struct Kind {
  const char* name;
  const char* listen;     // "%s": a temp dir
  const char* transport;  // where the channel must end
  bool in_process;        // the owner is this process
  bool passes_fds;
};

const Kind kKinds[] = {
    {"inproc", "unix:%s/s.sock", "inproc", true, true},
    {"unix", "unix:%s/s.sock", "unix", false, true},
    {"shm", "shm:%s/s.sock", "shm", false, true},
    {"tcp", "tcp://127.0.0.1:0", "tcp", false, false},
};

locus::CallOptions Watchdog() { return locus::CallOptions::WithTimeout(kWatchdog); }

// Polls `done` until it is true or the watchdog runs out.
template <typename F>
bool Eventually(F done) {
  const absl::Time until = absl::Now() + kWatchdog;
  while (!done()) {
    if (absl::Now() > until) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

class RmiTest : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    std::string listen = GetParam().listen;
    if (listen.find("%s") != std::string::npos) listen.replace(listen.find("%s"), 2, dir_.path());
    if (GetParam().in_process) {
      locus::ServerOptions options;
      options.handler_threads = 4;
      auto pinger = std::make_shared<PingerImpl>();
      auto self = locus::Export(pinger);
      ASSERT_TRUE(self.ok());
      pinger->set_self(*std::move(self));
      options.bootstrap = pinger;
      server_ = std::make_unique<locus::Server>(options);
      ASSERT_TRUE(server_->RegisterService(&kv_).ok());
      ASSERT_TRUE(server_->RegisterService(&files_).ok());
      ASSERT_TRUE(server_->AddListeningAddress(listen).ok());
      ASSERT_TRUE(server_->Start().ok());
      address_ = server_->listening_addresses()[0];
    } else {
      peer_ = std::make_unique<ChildProcess>(LOCUS_RMI_PEER_PATH, std::vector<std::string>{listen});
      ASSERT_TRUE(peer_->ready());
      ASSERT_EQ(peer_->addresses().size(), 1u);
      address_ = peer_->addresses()[0];
    }
    channel_ = Connect(address_);
    stub_ = std::make_unique<Kv::Stub>(channel_);
  }

  void TearDown() override {
    stub_.reset();
    channel_.reset();
    if (server_ != nullptr) server_->Shutdown();
  }

  std::shared_ptr<locus::Channel> Connect(const std::string& address) {
    locus::ChannelOptions options;
    options.allowed_transports = GetParam().transport;
    auto channel = locus::Connect(address, options);
    EXPECT_TRUE(channel.ok()) << channel.status();
    if (!channel.ok()) return nullptr;
    EXPECT_EQ((*channel)->transport_name(), GetParam().transport);
    return *channel;
  }

  absl::StatusOr<locus::Remote<Session>> OpenSession(const std::string& name, uint32_t lease_ms = 0) {
    OpenRequest request;
    request.set_name(name);
    request.set_lease_ms(lease_ms);
    absl::StatusOr<OpenReply> reply = stub_->Open(request, Watchdog());
    if (!reply.ok()) return reply.status();
    return locus::Remote<Session>::From(reply->session());
  }

  int64_t LiveSessions() {
    absl::StatusOr<Counter> sessions = stub_->Sessions(Empty(), Watchdog());
    EXPECT_TRUE(sessions.ok()) << sessions.status();
    return sessions.ok() ? sessions->value() : -1;
  }

  int64_t OwnerFdCount() {
    absl::StatusOr<Counter> count = stub_->FdCount(Empty(), Watchdog());
    EXPECT_TRUE(count.ok()) << count.status();
    return count.ok() ? count->value() : -1;
  }

  TempDir dir_;
  KvImpl kv_;
  FilesImpl files_;
  std::unique_ptr<locus::Server> server_;
  std::unique_ptr<ChildProcess> peer_;
  std::string address_;
  std::shared_ptr<locus::Channel> channel_;
  std::unique_ptr<Kv::Stub> stub_;
};

class RemoteRmiTest : public RmiTest {};
class FdPassingRmiTest : public RmiTest {};

TEST_P(RmiTest, AnObjectAReplyReturnsIsCalledLikeAnyStub) {
  absl::StatusOr<locus::Remote<Session>> session = OpenSession("first");
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->channel()->transport_name(), GetParam().transport);
  PutRequest put;
  put.set_key("k1");
  put.set_value("v1");
  ASSERT_TRUE((*session)->Put(put, Watchdog()).ok());
  put.set_key("k2");
  put.set_value("v2");
  ASSERT_TRUE((*session)->Put(put, Watchdog()).ok());
  GetRequest get;
  get.set_key("name");
  absl::StatusOr<Value> name = (*session)->Get(get, Watchdog());
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(name->value(), "first");
  if (GetParam().transport != std::string("tcp")) {
    EXPECT_EQ(name->caller_pid(), getpid());
  }
  // Asynchronous.
  get.set_key("k1");
  absl::StatusOr<Value> async = (*session)->AsyncGet(get, Watchdog()).Get();
  ASSERT_TRUE(async.ok()) << async.status();
  EXPECT_EQ(async->value(), "v1");
  // Streaming.
  get.set_key("k");
  auto reader = (*session)->Scan(get, Watchdog());
  std::vector<std::string> scanned;
  Value value;
  while (reader.Read(&value)) scanned.push_back(value.value());
  EXPECT_TRUE(reader.Finish().ok());
  EXPECT_EQ(scanned, (std::vector<std::string>{"v1", "v2"}));
  // Two objects are two objects.
  absl::StatusOr<locus::Remote<Session>> second = OpenSession("second");
  ASSERT_TRUE(second.ok());
  get.set_key("k1");
  EXPECT_EQ((*second)->Get(get, Watchdog()).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(RmiTest, TheServerCallsTheClientBackWhileTheCallIsInFlight) {
  auto progress = std::make_shared<ProgressImpl>();
  OpenRequest request;
  request.set_name("with progress");
  ASSERT_TRUE(locus::SetRef(request.mutable_progress(), progress).ok());
  absl::StatusOr<OpenReply> reply = stub_->Open(request, Watchdog());
  ASSERT_TRUE(reply.ok()) << reply.status();
  // Reported before Open returned: during the call.
  EXPECT_EQ(progress->reports(), (std::vector<int>{10, 100}));
}

TEST_P(RmiTest, AReentrantChainOfCallbacksCompletes) {
  // The server's pinger calls ours back, which calls the server's again...
  // each hop waiting synchronously inside a handler.
  auto theirs = locus::Remote<Pinger>::Bootstrap(channel_);
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  auto ours = std::make_shared<PingerImpl>();
  auto self = locus::Export(ours);
  ASSERT_TRUE(self.ok());
  PingRequest request;
  request.set_depth(7);
  *request.mutable_back() = self->ref();
  ours->set_self(*std::move(self));
  absl::StatusOr<PingReply> reply = (*theirs)->Ping(request, Watchdog());
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->hops(), 7);
}

TEST_P(RmiTest, AHandlerReachesItsCallersObjectAndLearnsWhenItGoesAway) {
  auto progress = std::make_shared<ProgressImpl>();
  locus::ChannelOptions options;
  options.allowed_transports = GetParam().transport;
  options.bootstrap = progress;
  auto caller = locus::Connect(address_, options);
  ASSERT_TRUE(caller.ok()) << caller.status();
  ASSERT_TRUE(Kv::Stub(*caller).ReportToCaller(Empty(), Watchdog()).ok());
  EXPECT_EQ(progress->reports(), std::vector<int>{42});
  // Without an offered object the handler finds none.
  EXPECT_EQ(stub_->ReportToCaller(Empty(), Watchdog()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  if (GetParam().in_process) return;  // in-process callers never "go away"
  absl::StatusOr<Counter> before = stub_->CallersGone(Empty(), Watchdog());
  ASSERT_TRUE(before.ok());
  caller->reset();  // the caller goes away: its connection closes
  EXPECT_TRUE(Eventually([&] {
    absl::StatusOr<Counter> gone = stub_->CallersGone(Empty(), Watchdog());
    return gone.ok() && gone->value() == before->value() + 1;
  }));
}

TEST_P(RmiTest, DroppingTheLastHandleReleasesTheObject) {
  const int64_t baseline = LiveSessions();
  std::vector<locus::Remote<Session>> sessions;
  for (int i = 0; i < 50; ++i) {
    auto session = OpenSession(absl::StrCat("s", i));
    ASSERT_TRUE(session.ok()) << session.status();
    sessions.push_back(*std::move(session));
  }
  EXPECT_EQ(LiveSessions(), baseline + 50);
  // Copies share the reference: dropping one keeps the object.
  std::vector<locus::Remote<Session>> copies = sessions;
  sessions.clear();
  GetRequest get;
  get.set_key("name");
  EXPECT_TRUE(copies[0]->Get(get, Watchdog()).ok());
  EXPECT_EQ(LiveSessions(), baseline + 50);
  copies.clear();
  EXPECT_TRUE(Eventually([&] { return LiveSessions() == baseline; })) << LiveSessions();
}

TEST_P(RmiTest, AnUnknownIdOrAWrongTokenFailsNotFound) {
  OpenRequest open;
  open.set_name("real");
  absl::StatusOr<OpenReply> reply = stub_->Open(open, Watchdog());
  ASSERT_TRUE(reply.ok());
  auto real = locus::Remote<Session>::From(reply->session());  // keeps the object alive
  ASSERT_TRUE(real.ok());
  GetRequest get;
  get.set_key("name");

  locus::ObjectRef unknown = reply->session();
  unknown.set_object_id(unknown.object_id() ^ 0x5a5a5a5a5a5a5a5aULL);
  locus::ObjectRef wrong_token = reply->session();
  wrong_token.set_token(std::string(16, 'x'));
  for (const locus::ObjectRef& forged : {unknown, wrong_token}) {
    auto session = locus::Remote<Session>::From(forged);
    if (!session.ok()) {
      EXPECT_EQ(session.status().code(), absl::StatusCode::kNotFound) << session.status();
      continue;
    }
    absl::StatusOr<Value> value = (*session)->Get(get, Watchdog());
    EXPECT_EQ(value.status().code(), absl::StatusCode::kNotFound) << value.status();
  }
  // The owner is unharmed.
  absl::StatusOr<Value> value = (*real)->Get(get, Watchdog());
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->value(), "real");
}

TEST_P(RmiTest, FileDescriptorsTravelWhereTheTransportCarriesThem) {
  const std::string path = dir_.path() + "/file.txt";
  std::ofstream(path) << "hello descriptor";
  Files::Stub files(channel_);
  FileRequest request;
  request.set_path(path);
  absl::StatusOr<FileReply> opened = files.OpenFile(request, Watchdog());
  locus::OwnedFd ours(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  FileUpload upload;
  locus::SetFd(upload.mutable_fd(), ours.get());
  absl::StatusOr<FileCheck> checked = files.Inspect(upload, Watchdog());
  if (!GetParam().passes_fds) {
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
    EXPECT_EQ(checked.status().code(), absl::StatusCode::kFailedPrecondition) << checked.status();
    return;
  }
  ASSERT_TRUE(opened.ok()) << opened.status();
  absl::StatusOr<locus::OwnedFd> fd = locus::TakeFd(opened->fd());
  ASSERT_TRUE(fd.ok()) << fd.status();
  char buffer[64] = {};
  ASSERT_GT(pread(fd->get(), buffer, sizeof(buffer) - 1, 0), 0);
  EXPECT_STREQ(buffer, "hello descriptor");
  EXPECT_EQ(locus::TakeFd(opened->fd()).status().code(), absl::StatusCode::kNotFound);  // once

  ASSERT_TRUE(checked.ok()) << checked.status();
  struct stat st;
  ASSERT_EQ(fstat(ours.get(), &st), 0);
  EXPECT_EQ(checked->inode(), st.st_ino);
  EXPECT_EQ(checked->content(), "hello descriptor");
  // Ours is still ours.
  EXPECT_GE(fcntl(ours.get(), F_GETFD), 0);
}

TEST_P(FdPassingRmiTest, AThousandCallsWithDescriptorsLeaveNoneOpen) {
  const std::string path = dir_.path() + "/file.txt";
  std::ofstream(path) << "x";
  Files::Stub files(channel_);
  const int64_t client_baseline = OpenFdCount();
  const int64_t owner_baseline = GetParam().in_process ? client_baseline : OwnerFdCount();
  locus::OwnedFd ours(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  for (int i = 0; i < 1000; ++i) {
    FileRequest request;
    request.set_path(i % 10 == 9 ? dir_.path() + "/missing" : path);  // some fail
    absl::StatusOr<FileReply> opened = files.OpenFile(request, Watchdog());
    if (i % 10 == 9) {
      EXPECT_EQ(opened.status().code(), absl::StatusCode::kNotFound);
    } else {
      ASSERT_TRUE(opened.ok()) << opened.status();
      if (i % 2 == 0) {  // others are left
        ASSERT_TRUE(locus::TakeFd(opened->fd()).ok());
      }
    }
    FileUpload upload;
    locus::SetFd(upload.mutable_fd(), ours.get());
    if (i % 3 == 0) {
      ASSERT_TRUE(files.Inspect(upload, Watchdog()).ok());
    } else {
      ASSERT_TRUE(files.Ignore(upload, Watchdog()).ok());  // the owner never takes it
    }
  }
  ours.reset();
  // Replies' descriptors nobody took close after kUnclaimedFdTimeout.
  EXPECT_TRUE(Eventually([&] { return OpenFdCount() <= client_baseline; }))
      << OpenFdCount() << " open, " << client_baseline << " before";
  if (!GetParam().in_process) {
    EXPECT_TRUE(Eventually([&] { return OwnerFdCount() <= owner_baseline; }))
        << OwnerFdCount() << " open at the owner, " << owner_baseline << " before";
  }
}

TEST_P(RmiTest, TenThousandReferencesComeAndGoWithoutResidue) {
  {
    // Warm up whatever the first reference starts (threads, timers).
    auto session = OpenSession("warm-up");
    ASSERT_TRUE(session.ok());
  }
  ASSERT_TRUE(Eventually([&] { return LiveSessions() == 0; }));
  const int64_t baseline = 0;
  const int64_t fds = OpenFdCount();
  const int64_t owner_fds = GetParam().in_process ? fds : OwnerFdCount();
  const size_t exports = locus::internal::ObjectRegistry::Get().size();
  for (int i = 0; i < 10000; ++i) {
    auto session = OpenSession("s");
    ASSERT_TRUE(session.ok()) << session.status();
    if (i % 100 == 0) {
      GetRequest get;
      get.set_key("name");
      ASSERT_TRUE((*session)->Get(get, Watchdog()).ok());
    }
  }
  EXPECT_TRUE(Eventually([&] { return LiveSessions() == baseline; })) << LiveSessions();
  // Memory: more rounds of 10,000 leave this process and the owner where
  // the first left them (allocators keep what the first grew). A leak
  // grows every round; noise from earlier tests grows one at most.
  auto memory = [&] {
    absl::StatusOr<Counter> kib = stub_->Memory(Empty(), Watchdog());
    return std::make_pair(ResidentKiB(), kib.ok() ? kib->value() : -1);
  };
  std::vector<std::pair<int64_t, int64_t>> rounds = {memory()};
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 10000; ++i) ASSERT_TRUE(OpenSession("s").ok());
    EXPECT_TRUE(Eventually([&] { return LiveSessions() == baseline; })) << LiveSessions();
    rounds.push_back(memory());
  }
  const int64_t grown_here =
      std::min(rounds[1].first - rounds[0].first, rounds[2].first - rounds[1].first);
  const int64_t grown_there =
      std::min(rounds[1].second - rounds[0].second, rounds[2].second - rounds[1].second);
  if (kResidentSizeMeansSomething) {
    EXPECT_LT(grown_here, 4096) << "KiB grown here per 10,000 references";
    EXPECT_LT(grown_there, 4096) << "KiB grown at the owner per 10,000 references";
  }
  // (Earlier tests' leftovers may go meanwhile: at most as many as before.)
  EXPECT_LE(OpenFdCount(), fds);
  if (!GetParam().in_process) {
    EXPECT_LE(OwnerFdCount(), owner_fds);
  }
  EXPECT_LE(locus::internal::ObjectRegistry::Get().size(), exports);
}

TEST_P(RemoteRmiTest, WhenTheOwnerDiesCallsFailUnavailableAndTheHolderIsTold) {
  auto session = OpenSession("doomed");
  ASSERT_TRUE(session.ok());
  absl::Notification told;
  absl::Status why;
  session->OnDisconnect([&](absl::Status status) {
    why = status;
    told.Notify();
  });
  peer_->Kill();
  ASSERT_TRUE(told.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_EQ(why.code(), absl::StatusCode::kUnavailable) << why;
  GetRequest get;
  get.set_key("name");
  EXPECT_EQ((*session)->Get(get, Watchdog()).status().code(), absl::StatusCode::kUnavailable);
}

TEST_P(RemoteRmiTest, WhenAHolderDiesTheOwnerIsToldAndReleasesTheObject) {
  auto live = std::make_shared<std::atomic<int64_t>>(0);
  absl::Notification holder_gone, unreferenced;
  locus::ExportOptions options;
  options.on_holder_gone = [&](const locus::PeerInfo&) { holder_gone.Notify(); };
  options.on_unreferenced = [&] { unreferenced.Notify(); };
  RefHolder hold;
  ASSERT_TRUE(
      locus::SetRef(hold.mutable_session(), std::make_shared<SessionImpl>(live), std::move(options)).ok());
  ASSERT_TRUE(stub_->Hold(hold, Watchdog()).ok());
  EXPECT_EQ(live->load(), 1);
  peer_->Kill();
  ASSERT_TRUE(holder_gone.WaitForNotificationWithTimeout(kWatchdog));
  ASSERT_TRUE(unreferenced.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_TRUE(Eventually([&] { return live->load() == 0; }));
}

TEST_P(RemoteRmiTest, AHolderThatDropsItsReferenceReleasesTheObject) {
  auto live = std::make_shared<std::atomic<int64_t>>(0);
  absl::Notification unreferenced;
  locus::ExportOptions options;
  options.on_unreferenced = [&] { unreferenced.Notify(); };
  RefHolder hold;
  ASSERT_TRUE(
      locus::SetRef(hold.mutable_session(), std::make_shared<SessionImpl>(live), std::move(options)).ok());
  ASSERT_TRUE(stub_->Hold(hold, Watchdog()).ok());
  ASSERT_TRUE(stub_->Hold(hold, Watchdog()).ok());  // twice: counted twice
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(unreferenced.HasBeenNotified());
  ASSERT_TRUE(stub_->Drop(Empty(), Watchdog()).ok());
  ASSERT_TRUE(unreferenced.WaitForNotificationWithTimeout(kWatchdog));
  EXPECT_TRUE(Eventually([&] { return live->load() == 0; }));
}

TEST_P(RemoteRmiTest, ALeaseOutlivesTheConnectionThenExpires) {
  auto leased = OpenSession("leased", /*lease_ms=*/5000);
  auto plain = OpenSession("plain");
  auto short_lease = OpenSession("short", /*lease_ms=*/200);
  ASSERT_TRUE(leased.ok() && plain.ok() && short_lease.ok());
  const int64_t before = LiveSessions();
  ASSERT_TRUE(stub_->Restart(Empty(), Watchdog()).ok());
  // The owner restarted its server: every connection to it broke.
  GetRequest get;
  get.set_key("name");
  ASSERT_TRUE(Eventually([&] {
    return (*plain)->Get(get, locus::CallOptions::WithTimeout(absl::Seconds(1))).status().code() ==
           absl::StatusCode::kUnavailable;
  }));
  // Within its lease a reference reconnects and carries on (once the owner
  // listens again: until then calls fail UNAVAILABLE, as any reconnect).
  absl::StatusOr<Value> value;
  ASSERT_TRUE(Eventually([&] {
    value = (*leased)->Get(get, Watchdog());
    return value.ok() || !absl::IsUnavailable(value.status());
  }));
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->value(), "leased");
  // Past its lease (nobody called it meanwhile) the object is gone.
  EXPECT_TRUE(Eventually([&] { return LiveSessions() <= before - 2; })) << LiveSessions();
  EXPECT_EQ((*short_lease)->Get(get, Watchdog()).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(RemoteRmiTest, AThirdPartyCallsTheOwnerDirectlyWithTheToken) {
  // C: the fixture's peer (owns the session); B: a second peer; A: this
  // process, which passes C's reference to B.
  auto c_reply = stub_->Open([] {
    OpenRequest request;
    request.set_name("owned by C");
    return request;
  }(), Watchdog());
  ASSERT_TRUE(c_reply.ok()) << c_reply.status();
  // A keeps its own handle: the object outlives the hand-off whatever the
  // timing (without it, C keeps it only while B adopts within A's pin).
  auto a_handle = locus::Remote<Session>::From(c_reply->session());
  ASSERT_TRUE(a_handle.ok()) << a_handle.status();
  const std::string b_listen = "unix:" + dir_.path() + "/b.sock";
  ChildProcess b(LOCUS_RMI_PEER_PATH, {b_listen});
  ASSERT_TRUE(b.ready());
  auto b_channel = locus::Connect(b.addresses()[0]);
  ASSERT_TRUE(b_channel.ok());
  Kv::Stub b_stub(*b_channel);
  RefHolder holder;
  *holder.mutable_session() = c_reply->session();
  holder.set_key("name");
  absl::StatusOr<Value> value = b_stub.CallSession(holder, Watchdog());
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->value(), "owned by C");
  if (GetParam().transport != std::string("tcp")) {
    EXPECT_EQ(value->caller_pid(), b.pid()) << "C saw the call come from B itself";
    EXPECT_EQ(value->transport(), "shm") << "B reached C on the same host by shared memory";
  }
  // Knowing the id is not enough: B cannot call it without the token.
  locus::ObjectRef forged = c_reply->session();
  forged.set_token(std::string(16, '\0'));
  *holder.mutable_session() = forged;
  EXPECT_EQ(b_stub.CallSession(holder, Watchdog()).status().code(), absl::StatusCode::kNotFound);
  // While the real token still works.
  *holder.mutable_session() = c_reply->session();
  EXPECT_TRUE(b_stub.CallSession(holder, Watchdog()).ok());
}

std::string KindName(const ::testing::TestParamInfo<Kind>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(EveryOwner, RmiTest, ::testing::ValuesIn(kKinds), KindName);
INSTANTIATE_TEST_SUITE_P(OtherProcess, RemoteRmiTest, ::testing::ValuesIn(kKinds + 1, kKinds + 4),
                         KindName);
// tcp refuses descriptors (FileDescriptorsTravelWhereTheTransportCarriesThem).
INSTANTIATE_TEST_SUITE_P(PassingDescriptors, FdPassingRmiTest, ::testing::ValuesIn(kKinds, kKinds + 3),
                         KindName);

}  // namespace
}  // namespace rmitest
