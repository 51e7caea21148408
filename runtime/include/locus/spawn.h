// Parent and child processes: a parent starts a helper process with an
// inherited socket pair, as Mojo and Binder bootstrap theirs, and the two
// exchange their root objects over it: the parent gets a reference to the
// object the child offers, the child one to the parent's. No path, no name to
// squat, no listening socket: only the two processes hold the pair. The
// connection moves to shared memory as any same-host one does (unless the
// parent's ChannelOptions::allowed_transports forbids "shm": then it stays
// on the socket, "unix"). The addresses underneath are "fd:N" and
// "shm-fd:N" (locus/channel.h).
//
// Example (the parent; echo::Echo as in samples/echo/echo.proto):
//   namespace echo = ::locus::samples::echo;
//   locus::SpawnOptions options;
//   options.root = std::make_shared<EchoImpl>();  // an echo::Echo::Service, for the child
//   absl::StatusOr<std::unique_ptr<locus::ChildProcess>> child =
//       locus::SpawnChild({"/usr/libexec/app/helper", "--quiet"}, std::move(options));
//   if (!child.ok()) return child.status();
//   (*child)->OnExit([](absl::StatusOr<locus::ExitStatus> exit) {
//     if (exit.ok()) std::fprintf(stderr, "helper ended: %s\n", exit->ToString().c_str());
//   });
//   absl::StatusOr<locus::Remote<echo::Echo>> helper = (*child)->Root<echo::Echo>();
//   if (!helper.ok()) return helper.status();
//   echo::SayRequest request;
//   request.set_text("hello");
//   absl::StatusOr<echo::SayReply> reply = (*helper)->Say(request);
//
// Example (the child, in its main()):
//   absl::StatusOr<std::unique_ptr<locus::ParentLink>> parent =
//       locus::ConnectToParent(std::make_shared<EchoImpl>());
//   if (!parent.ok()) return 1;
//   absl::StatusOr<locus::Remote<echo::Echo>> host = (*parent)->Root<echo::Echo>();
//   if (!host.ok()) return 1;
//   (void)(*parent)->WaitUntilDisconnected(absl::InfiniteFuture());  // the parent went away
//   return 0;
//
// Failure: when the child dies, calls on its objects fail UNAVAILABLE, their
// Remote::OnDisconnect callbacks run, and so do ChildProcess::OnExit's (with
// the exit status); the channel does not reconnect (its descriptor is
// spent). When the parent dies or closes the link, the child's link ends
// (ParentLink::WaitUntilDisconnected returns, OnDisconnect callbacks run) and
// calls on the parent's objects fail UNAVAILABLE.
//
// Credentials: the child sees the parent's pid, uid and gid (SO_PEERCRED) in
// PeerInfo and ServerContext::peer(). The parent's end of the pair carries
// none (the kernel records the pair's maker, the parent itself, for both
// ends): ChildProcess::pid() is the child's.
//
// Threading: both classes are thread-safe. Calls on the roots run on the
// process-wide object pool (locus/object.h), so a root may call the other
// side back while the other side's call to it is in flight.
#ifndef LOCUS_SPAWN_H_
#define LOCUS_SPAWN_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "locus/channel.h"
#include "locus/object.h"
#include "locus/rmi.pb.h"
#include "locus/service.h"
#include "locus/transport.h"

namespace locus {

namespace internal {
class ConnectionCore;
class ChildReaper;
class LinkEnd;
}  // namespace internal

// The environment variable through which SpawnChild tells the child the
// number of its end of the pair (read by ConnectToParent).
inline constexpr char kParentFdVariable[] = "LOCUS_PARENT_FD";

// How a child process ended.
struct ExitStatus {
  // The code it passed to exit(), if it exited; else -1.
  int exit_code = -1;
  // The signal that ended it (e.g. SIGKILL), if one did; else 0.
  int signal = 0;

  bool exited() const { return signal == 0 && exit_code >= 0; }
  // "exit code 3", "killed by signal 9 (Killed)".
  std::string ToString() const;
};

struct SpawnOptions {
  // Offered to the child (its ParentLink::Root). nullptr: none.
  std::shared_ptr<Service> root;
  // The parent's channel to the child. allowed_transports decides between
  // shared memory ("shm-fd:N") and the socket itself ("fd:N"); `bootstrap`
  // is replaced by `root`. connect_timeout bounds the child's start: exec,
  // its ConnectToParent and the handshake.
  ChannelOptions channel;
  // "NAME=value" entries added to the child's environment; they replace
  // inherited ones of the same NAME. kParentFdVariable is always set. The
  // rest is this process's environment, read as getenv would (not safe
  // against a concurrent setenv).
  std::vector<std::string> environment;
};

// A child process started by SpawnChild, connected to this process.
//
// Lifetime: destroying it closes the connection (the child's link ends),
// then, unless the child was already reaped (Wait() returned), kills it
// (SIGKILL) and reaps it: no child outlives its handle, none is left a
// zombie. To let it finish by itself, Disconnect() and Wait().
// Hazard: the child is reaped by a thread of this handle (one per child,
// blocked in waitid): reaping it elsewhere (waitpid(-1), SIGCHLD set to
// SIG_IGN) makes Wait() fail and may let Kill() signal a recycled pid.
class ChildProcess {
 public:
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // The connection to the child. Its transport_name() is "shm" or "unix".
  // Calls on the child's services by name fail (ConnectToParent serves
  // only its root): use Root().
  const std::shared_ptr<Channel>& channel() const { return channel_; }

  // The object the child offers (ConnectToParent's `root`); NOT_FOUND if it
  // offers none, UNAVAILABLE once its connection is gone.
  template <typename ServiceT>
  absl::StatusOr<Remote<ServiceT>> Root() const {
    return Remote<ServiceT>::Bootstrap(channel_);
  }

  // Sends `signal`. FAILED_PRECONDITION once the child was reaped.
  absl::Status Kill(int signal);
  // Closes the connection to the child (its ParentLink ends); calls on its
  // objects then fail UNAVAILABLE. Idempotent.
  void Disconnect();
  // Waits until the child has exited and was reaped: its exit status.
  // DEADLINE_EXCEEDED if it still runs at `deadline`; INTERNAL if it was
  // reaped elsewhere (see the class comment).
  absl::StatusOr<ExitStatus> Wait(absl::Time deadline = absl::InfiniteFuture());
  // The death notification: runs `callback` once, on the object pool, when
  // the child has exited (at once if it has), with what Wait() returns.
  void OnExit(absl::AnyInvocable<void(absl::StatusOr<ExitStatus>) &&> callback);

 private:
  friend absl::StatusOr<std::unique_ptr<ChildProcess>> SpawnChild(std::vector<std::string> argv,
                                                                    SpawnOptions options);
  explicit ChildProcess(pid_t pid);

  const pid_t pid_;
  std::unique_ptr<internal::ChildReaper> reaper_;
  std::shared_ptr<Channel> channel_;  // set once, by SpawnChild
};

// Starts `argv` (argv[0] is the program, searched in PATH if it has no
// '/') with one end of a fresh socketpair (the only descriptor it inherits
// besides those without close-on-exec) and connects to it as the
// connecting side, offering options.root: returns once the child called
// ConnectToParent and the handshake completed. Errors: INVALID_ARGUMENT
// (empty argv, bad options), NOT_FOUND or PERMISSION_DENIED (cannot
// execute), FAILED_PRECONDITION (allowed_transports allows neither shm nor
// unix), or the connection's error (the child exited, or did not connect
// within options.channel.connect_timeout): the child is then killed and
// reaped.
absl::StatusOr<std::unique_ptr<ChildProcess>> SpawnChild(std::vector<std::string> argv,
                                                         SpawnOptions options = {});

struct ParentLinkOptions {
  // Bound on the parent's first frame and handshake.
  absl::Duration connect_timeout = absl::Seconds(10);
  uint64_t max_receive_message_size = kDefaultMaxMessageSize;
  uint64_t max_send_message_size = kDefaultMaxMessageSize;
  // nullptr: DefaultTransportRegistry().
  TransportRegistry* transports = nullptr;
};

// The child's connection to the parent that spawned it.
//
// Lifetime: destroying it closes the connection; the parent's calls on this
// process's objects then fail UNAVAILABLE (and the parent's Remote::
// OnDisconnect callbacks run). Remotes made from Root() fail UNAVAILABLE
// once the link is gone.
class ParentLink {
 public:
  ~ParentLink();
  ParentLink(const ParentLink&) = delete;
  ParentLink& operator=(const ParentLink&) = delete;

  // The parent's root object (SpawnOptions::root); NOT_FOUND if it offered
  // none, UNAVAILABLE once the link is gone.
  template <typename ServiceT>
  absl::StatusOr<Remote<ServiceT>> Root() const {
    absl::StatusOr<ObjectRef> ref = RootRef();
    if (!ref.ok()) return ref.status();
    return Remote<ServiceT>::From(*ref);
  }
  absl::StatusOr<ObjectRef> RootRef() const;

  // The parent as the kernel names it: transport "shm" or "unix", and its
  // pid, uid and gid.
  const PeerInfo& peer() const;
  // "shm" or "unix".
  std::string transport_name() const;
  bool connected() const;
  // Waits until the link has ended (the parent exited or disconnected, or
  // Close()): why it ended. DEADLINE_EXCEEDED if it is still up at
  // `deadline`.
  absl::Status WaitUntilDisconnected(absl::Time deadline = absl::InfiniteFuture());
  // Runs `callback` once, on the object pool, when the link has ended (at
  // once if it has), with why.
  void OnDisconnect(absl::AnyInvocable<void(absl::Status) &&> callback);
  // Ends the link. Idempotent.
  void Close();

 private:
  friend absl::StatusOr<std::unique_ptr<ParentLink>> ConnectToParent(std::shared_ptr<Service>,
                                                                     const ParentLinkOptions&);
  explicit ParentLink(std::shared_ptr<internal::ConnectionCore> core);

  const std::shared_ptr<internal::ConnectionCore> core_;
  // Set by the connection's close observer, which may outlive this handle.
  const std::shared_ptr<internal::LinkEnd> end_;
};

// In a process SpawnChild started: connects to the parent over the
// inherited descriptor (kParentFdVariable) as the accepting side, offering
// `root` (nullptr: nothing), and waits for the parent's handshake. Call it
// once: it takes the descriptor (a second call fails INVALID_ARGUMENT, "not
// open"). FAILED_PRECONDITION if this process was not started by
// SpawnChild; DEADLINE_EXCEEDED if the parent sent nothing within
// options.connect_timeout.
// Hazard: the variable stays set (unsetenv is not thread-safe): a process
// this one starts by other means inherits it, and would misread whatever
// its own descriptor of that number is. SpawnChild sets it afresh.
absl::StatusOr<std::unique_ptr<ParentLink>> ConnectToParent(std::shared_ptr<Service> root,
                                                            const ParentLinkOptions& options = {});

}  // namespace locus

#endif  // LOCUS_SPAWN_H_
