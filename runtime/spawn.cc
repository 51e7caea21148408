// Parent and child processes (locus/spawn.h). The parent makes a socketpair,
// starts the child with one end (its number in LOCUS_PARENT_FD) and dials the
// other as "shm-fd:N" (or "fd:N") through an ordinary channel offering its
// root; the child listens on "fd:N" for that one connection and answers on a
// ConnectionCore of its own (the accepting side), offering its root. Each
// side's root travels in its handshake frame (bootstrap objects).
#include "locus/spawn.h"

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "internal/channel_internal.h"
#include "internal/connection_core.h"
#include "internal/object_registry.h"
#include "internal/process_setup.h"
#include "internal/transport_selection.h"

extern char** environ;

namespace locus {
namespace internal {

// Waits for one child's exit on a thread of its own and reaps it. The exit
// is first observed without reaping (waitid WNOWAIT) and the child reaped
// under mu_, so that Kill(), under mu_ too, never signals a pid the kernel
// may already have given to another process.
class ChildReaper {
 public:
  explicit ChildReaper(pid_t pid) : pid_(pid), thread_([this] { Run(); }) {}
  // The child must be exiting (or have exited): joins the thread.
  ~ChildReaper() { thread_.join(); }

  absl::Status Kill(int signal) {
    absl::MutexLock lock(&mu_);
    if (reaped_) return absl::FailedPreconditionError(absl::StrCat("child ", pid_, " has exited"));
    if (kill(pid_, signal) != 0) {
      return absl::InternalError(absl::StrCat("kill(", pid_, ", ", signal, "): ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }

  bool reaped() {
    absl::MutexLock lock(&mu_);
    return reaped_;
  }

  absl::StatusOr<ExitStatus> Wait(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithDeadline(absl::Condition(&reaped_), deadline)) {
      return absl::DeadlineExceededError(absl::StrCat("child ", pid_, " is still running"));
    }
    return status_;
  }

  void OnExit(absl::AnyInvocable<void(absl::StatusOr<ExitStatus>) &&> callback) {
    absl::StatusOr<ExitStatus> status;
    {
      absl::MutexLock lock(&mu_);
      if (!reaped_) {
        callbacks_.push_back(std::move(callback));
        return;
      }
      status = status_;
    }
    ObjectPool().Post([callback = std::move(callback), status]() mutable { std::move(callback)(status); });
  }

 private:
  void Run() {
    siginfo_t info{};
    int waited;
    do {
      waited = waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT);
    } while (waited != 0 && errno == EINTR);
    absl::StatusOr<ExitStatus> status;
    if (waited != 0) {
      status = absl::InternalError(absl::StrCat("child ", pid_, " was reaped elsewhere (waitid: ",
                                                std::strerror(errno), ")"));
    } else {
      ExitStatus exit;
      if (info.si_code == CLD_EXITED) {
        exit.exit_code = info.si_status;
      } else {
        exit.signal = info.si_status;
      }
      status = exit;
    }
    std::vector<absl::AnyInvocable<void(absl::StatusOr<ExitStatus>) &&>> callbacks;
    {
      absl::MutexLock lock(&mu_);
      if (waited == 0) {
        int ignored;
        while (waitpid(pid_, &ignored, 0) < 0 && errno == EINTR) {
        }
      }
      reaped_ = true;
      status_ = status;
      callbacks.swap(callbacks_);
    }
    if (callbacks.empty()) return;
    // On the pool: a callback may destroy the ChildProcess, which joins this
    // thread.
    ObjectPool().Post([callbacks = std::move(callbacks), status]() mutable {
      for (auto& callback : callbacks) std::move(callback)(status);
    });
  }

  const pid_t pid_;
  absl::Mutex mu_;
  bool reaped_ ABSL_GUARDED_BY(mu_) = false;
  absl::StatusOr<ExitStatus> status_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::AnyInvocable<void(absl::StatusOr<ExitStatus>) &&>> callbacks_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // last: starts once the members above exist
};

// How a ParentLink ended, set by its connection's close observer.
class LinkEnd {
 public:
  void Set(absl::Status reason) {
    absl::MutexLock lock(&mu_);
    if (ended_) return;
    ended_ = true;
    reason_ = std::move(reason);
  }
  absl::Status Await(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithDeadline(absl::Condition(&ended_), deadline)) {
      return absl::DeadlineExceededError("the link to the parent is still up");
    }
    return reason_;
  }

 private:
  absl::Mutex mu_;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status reason_ ABSL_GUARDED_BY(mu_);
};

namespace {

// The one connection a descriptor listener delivers, handed from its
// event-loop thread to ConnectToParent.
class AcceptedSlot {
 public:
  void Put(std::shared_ptr<ConnectionCore> core) {
    absl::MutexLock lock(&mu_);
    core_ = std::move(core);
  }
  // The connection, once delivered (waits until `deadline`); null if none.
  std::shared_ptr<ConnectionCore> Take(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto delivered = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return core_ != nullptr; };
    mu_.AwaitWithDeadline(absl::Condition(&delivered), deadline);
    return std::move(core_);
  }

 private:
  absl::Mutex mu_;
  std::shared_ptr<ConnectionCore> core_ ABSL_GUARDED_BY(mu_);
};

absl::Status SpawnError(int error, const std::string& program) {
  const std::string message = absl::StrCat("cannot start ", program, ": ", std::strerror(error));
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case ENOEXEC:
      return absl::InvalidArgumentError(message);
    default:
      return absl::UnavailableError(message);
  }
}

// The child's environment: this process's, less kParentFdVariable and the
// names `extra` sets, then `extra`, then kParentFdVariable=`fd`.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& extra, int fd) {
  absl::flat_hash_set<std::string> replaced = {kParentFdVariable};
  for (const std::string& entry : extra) replaced.insert(entry.substr(0, entry.find('=')));
  std::vector<std::string> out;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const char* equals = std::strchr(*entry, '=');
    if (equals != nullptr && replaced.contains(std::string(*entry, equals - *entry))) continue;
    out.push_back(*entry);
  }
  out.insert(out.end(), extra.begin(), extra.end());
  out.push_back(absl::StrCat(kParentFdVariable, "=", fd));
  return out;
}

// posix_spawnp with `child_fd` inherited as it is numbered (adddup2 onto
// itself clears its close-on-exec flag in the child only), the signal mask
// emptied and SIGPIPE back to its default. The pid, or why not.
absl::StatusOr<pid_t> StartProcess(const std::vector<std::string>& argv,
                                   const std::vector<std::string>& environment, int child_fd) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  std::vector<char*> env;
  for (const std::string& entry : environment) env.push_back(const_cast<char*>(entry.c_str()));
  env.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, child_fd, child_fd);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int error = posix_spawnp(&pid, argv[0].c_str(), &actions, &attributes, args.data(), env.data());
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) return SpawnError(error, argv[0]);
  return pid;
}

}  // namespace
}  // namespace internal

std::string ExitStatus::ToString() const {
  if (signal != 0) return absl::StrCat("killed by signal ", signal, " (", strsignal(signal), ")");
  return absl::StrCat("exit code ", exit_code);
}

ChildProcess::ChildProcess(pid_t pid) : pid_(pid), reaper_(std::make_unique<internal::ChildReaper>(pid)) {}

ChildProcess::~ChildProcess() {
  Disconnect();
  if (!reaper_->reaped()) (void)reaper_->Kill(SIGKILL);
  reaper_.reset();  // joins the reaper, which reaps the child
}

absl::Status ChildProcess::Kill(int signal) { return reaper_->Kill(signal); }

void ChildProcess::Disconnect() {
  if (channel_ == nullptr) return;
  // The connection in use, if it still is (the channel never redials).
  absl::StatusOr<std::shared_ptr<internal::ConnectionCore>> core =
      internal::ChannelConnection(*channel_, absl::Now());
  if (core.ok()) (*core)->Close(absl::CancelledError("the parent disconnected from its child"));
}

absl::StatusOr<ExitStatus> ChildProcess::Wait(absl::Time deadline) { return reaper_->Wait(deadline); }

void ChildProcess::OnExit(absl::AnyInvocable<void(absl::StatusOr<ExitStatus>) &&> callback) {
  reaper_->OnExit(std::move(callback));
}

absl::StatusOr<std::unique_ptr<ChildProcess>> SpawnChild(std::vector<std::string> argv,
                                                         SpawnOptions options) {
  internal::EnsureProcessSetup();
  if (argv.empty() || argv[0].empty()) return absl::InvalidArgumentError("SpawnChild: empty argv");
  for (const std::string& entry : options.environment) {
    if (entry.find('=') == std::string::npos || entry[0] == '=') {
      return absl::InvalidArgumentError(
          absl::StrCat("SpawnChild: environment entry \"", entry, "\" is not NAME=value"));
    }
  }
  absl::StatusOr<internal::TransportPolicy> policy =
      internal::TransportPolicy::ForChannel(options.channel.allowed_transports);
  if (!policy.ok()) return policy.status();
  std::string scheme;
  if (policy->Allows("shm")) {
    scheme = "shm-fd:";
  } else if (policy->Allows("unix")) {
    scheme = "fd:";
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        "SpawnChild: the transport policy (", policy->ToString(),
        ") allows neither shm nor unix, the only ways to a child over its socket pair"));
  }
  // Checked before the pair exists: past here Connect takes the parent's end.
  TransportRegistry& registry =
      options.channel.transports != nullptr ? *options.channel.transports : DefaultTransportRegistry();
  if (absl::StatusOr<Transport*> transport = registry.ForAddress(absl::StrCat(scheme, 0)); !transport.ok()) {
    return transport.status();
  }

  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("SpawnChild: socketpair: ", std::strerror(errno)));
  }
  absl::StatusOr<pid_t> pid =
      internal::StartProcess(argv, internal::ChildEnvironment(options.environment, pair[1]), pair[1]);
  close(pair[1]);
  if (!pid.ok()) {
    close(pair[0]);
    return pid.status();
  }
  // From here the handle owns the child: returning without it kills and
  // reaps the child.
  std::unique_ptr<ChildProcess> child(new ChildProcess(*pid));
  ChannelOptions channel_options = options.channel;
  channel_options.bootstrap = std::move(options.root);
  absl::StatusOr<std::shared_ptr<Channel>> channel =
      Connect(absl::StrCat(scheme, pair[0]), channel_options);
  if (!channel.ok()) {
    // Did it exit by itself (a crash, a missing ConnectToParent)? Say so.
    (void)child->Kill(SIGKILL);
    absl::StatusOr<ExitStatus> exit = child->Wait();
    const bool by_itself = exit.ok() && exit->signal != SIGKILL;
    return absl::Status(channel.status().code(),
                        absl::StrCat("child ", argv[0], " (pid ", *pid, ") ",
                                     by_itself ? absl::StrCat("ended (", exit->ToString(), ") before it connected")
                                               : "did not connect",
                                     ": ", channel.status().message()));
  }
  child->channel_ = *std::move(channel);
  return child;
}

ParentLink::ParentLink(std::shared_ptr<internal::ConnectionCore> core)
    : core_(std::move(core)), end_(std::make_shared<internal::LinkEnd>()) {
  core_->AddCloseObserver([end = end_](absl::Status reason) { end->Set(std::move(reason)); });
}

ParentLink::~ParentLink() { Close(); }

absl::StatusOr<ObjectRef> ParentLink::RootRef() const {
  if (!core_->usable()) {
    return absl::UnavailableError(absl::StrCat("the link to the parent (", core_->peer().remote_address,
                                               ") is closed"));
  }
  const ObjectRef* ref = core_->peer_bootstrap();
  if (ref == nullptr) return absl::NotFoundError("the parent offers no root object (SpawnOptions::root)");
  return *ref;
}

const PeerInfo& ParentLink::peer() const { return core_->peer(); }

std::string ParentLink::transport_name() const { return internal::TransportKind(core_->peer().transport); }

bool ParentLink::connected() const { return core_->usable(); }

absl::Status ParentLink::WaitUntilDisconnected(absl::Time deadline) { return end_->Await(deadline); }

void ParentLink::OnDisconnect(absl::AnyInvocable<void(absl::Status) &&> callback) {
  core_->AddCloseObserver(std::move(callback));
}

void ParentLink::Close() { core_->Close(absl::CancelledError("the child closed its link to the parent")); }

absl::StatusOr<std::unique_ptr<ParentLink>> ConnectToParent(std::shared_ptr<Service> root,
                                                            const ParentLinkOptions& options) {
  internal::EnsureProcessSetup();
  const char* value = std::getenv(kParentFdVariable);
  if (value == nullptr || *value == '\0') {
    return absl::FailedPreconditionError(absl::StrCat(
        kParentFdVariable, " is not set: this process was not started by locus::SpawnChild"));
  }
  const std::string address = absl::StrCat("fd:", value);
  TransportRegistry& registry =
      options.transports != nullptr ? *options.transports : DefaultTransportRegistry();
  absl::StatusOr<Transport*> transport = registry.ForAddress(address);
  if (!transport.ok()) return transport.status();
  TransportOptions transport_options;
  transport_options.max_receive_message_size = options.max_receive_message_size;
  internal::ConnectionCore::Options core_options;
  core_options.connecting_side = false;
  core_options.max_send_message_size = options.max_send_message_size;
  core_options.max_receive_message_size = options.max_receive_message_size;
  core_options.bootstrap = std::move(root);
  auto slot = std::make_shared<internal::AcceptedSlot>();
  absl::StatusOr<std::unique_ptr<Listener>> listener = (*transport)->Listen(
      address, transport_options,
      [slot, core_options = std::move(core_options)](std::unique_ptr<Connection> connection) {
        auto core = internal::ConnectionCore::Create(std::move(connection), core_options);
        core->Start();
        slot->Put(std::move(core));
      });
  if (!listener.ok()) {
    return absl::Status(listener.status().code(),
                        absl::StrCat(kParentFdVariable, "=", value, ": ", listener.status().message()));
  }
  const absl::Time deadline = absl::Now() + options.connect_timeout;
  std::shared_ptr<internal::ConnectionCore> core = slot->Take(deadline);
  listener->reset();  // no delivery after this
  if (core == nullptr) core = slot->Take(absl::InfinitePast());  // delivered meanwhile
  if (core == nullptr) {
    return absl::DeadlineExceededError(absl::StrCat("the parent sent nothing over ", address, " within ",
                                                    absl::FormatDuration(options.connect_timeout)));
  }
  absl::Status handshake = core->AwaitPeerHandshake(deadline);
  if (!handshake.ok()) {
    core->Close(handshake);
    return absl::Status(handshake.code(),
                        absl::StrCat("handshake with the parent failed: ", handshake.message()));
  }
  return std::unique_ptr<ParentLink>(new ParentLink(std::move(core)));
}

}  // namespace locus
