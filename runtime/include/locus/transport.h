// The abstract transport interface: the only thing the runtime knows about
// how bytes move. A transport listens, connects, and gives the runtime a
// `Connection` that carries whole frames (see frame.h) in both directions.
// Call multiplexing, the handshake, deadlines and status live in the runtime,
// above this interface (as Cap'n Proto's RPC core sits above VatNetwork).
//
// The contract every Connection keeps (tests/conformance/
// connection_conformance_test.cc checks it for each kind of connection):
//   1. Frames are whole: a frame sent is delivered whole or not at all,
//      header, meta and payload as sent. Frames of concurrent senders never
//      interleave.
//   2. A reliable() connection delivers every frame, in the order each
//      sender sent them. An unreliable one may lose or reorder frames, never
//      corrupt or merge them.
//   3. FrameSink callbacks for one connection never overlap and come in wire
//      order, possibly from different threads (the transport's I/O thread, a
//      caller inside DriveUntil).
//   4. OnClosed is called exactly once, last: no callback follows it. It
//      comes when the peer goes away (a reliable connection notices; an
//      unreliable one may not), on an I/O error, on malformed input (the
//      reason is then not OK and names it: bad bytes close the connection,
//      never the process), or on Close().
//   5. Close() may be called from any thread, any number of times, also from
//      inside a FrameSink callback; the first call's reason wins. Destroying
//      a connection closes it and waits until no callback is running.
//   6. Send never blocks past its deadline. It fails with UNAVAILABLE once
//      the connection is closed, and with DEADLINE_EXCEEDED if the peer does
//      not take the bytes in time (the connection is then closed: a partial
//      frame cannot be taken back).
//   7. A well-formed frame whose payload exceeds max_receive_message_size is
//      not delivered: OnOversizeFrame(header) reports it and the connection
//      goes on.
//   8. HasQueuedOutput() is true while bytes of frames accepted by Send have
//      not been handed to the peer, and becomes false once they have.
//   9. DriveUntil either returns false at once (another thread reads, or the
//      transport cannot read on the caller's thread) or reads and delivers
//      on the calling thread until done() is true, the deadline passes or the
//      connection closes. AdjustBackgroundReads may stop the transport's own
//      reading at 0 but never its noticing that the peer hung up.
//  10. Borrowed frame bytes (Frame::borrowed_*) are valid only during
//      OnFrame and may be in memory the peer can still write.
//  11. peer() and reliable() never change during the connection's life.
//  12. File descriptors travel with frames where CanPassFds() says so
//      (Unix-socket, shared-memory and in-process connections):
//      SendWithFds sends one frame with up to kMaxFdsPerFrame descriptors,
//      which stay the caller's (it may close them as soon as the call
//      returns); the peer's sink finds duplicates of them, open, in that
//      frame's Frame::fds, in the order sent, never with another frame.
//      Descriptors the sink does not take are closed by the transport.
//      Elsewhere (TCP, UDP) SendWithFds with descriptors fails
//      FAILED_PRECONDITION and sends nothing. Descriptors a peer sends
//      that no frame claims, or more than a frame may carry, close the
//      connection as malformed input (contract 4), every one of them
//      closed.
//
// Adding a transport: implement `Transport` (and `Connection`, `Listener`),
// register it in a `TransportRegistry` under its address scheme(s), add it to
// the connection conformance suite and make it pass tests/conformance
// (docs/architecture.md walks through it). Transports may use the toolkit in
// transports/common/ (frame decoding, spin budget, send stalls) but nothing
// of the runtime's internals.
//
// Example:
//   locus::TransportRegistry& registry = locus::DefaultTransportRegistry();
//   locus::Transport* tcp = registry.Find("tcp");
//   auto conn = tcp->Connect("tcp://127.0.0.1:7000", {}, absl::Now() + absl::Seconds(5));
#ifndef LOCUS_TRANSPORT_H_
#define LOCUS_TRANSPORT_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "locus/frame.h"

namespace locus {

// Default limit on one message (request or response payload): 4 MiB, as gRPC.
inline constexpr uint64_t kDefaultMaxMessageSize = 4u << 20;
// Limit on a frame's meta section (call header, status, metadata).
inline constexpr uint32_t kDefaultMaxMetaSize = 64u << 10;
// Most file descriptors one frame carries (Connection::SendWithFds).
inline constexpr size_t kMaxFdsPerFrame = 64;

// Checks descriptors a caller wants to send with a frame: at most
// kMaxFdsPerFrame, each open (so nothing fails half-way for a bad one).
// INVALID_ARGUMENT otherwise. For transports implementing SendWithFds.
absl::Status ValidateFdsToSend(absl::Span<const int> fds);

// What a transport knows about the other end of a connection.
struct PeerInfo {
  std::string transport;       // scheme of the transport, e.g. "unix", "tcp"
  std::string local_address;   // e.g. "tcp://127.0.0.1:7000"
  std::string remote_address;  // e.g. "tcp://127.0.0.1:53122"
  // Kernel-verified credentials of the peer process (Unix sockets only).
  bool has_credentials = false;
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Options shared by all transports. Transports ignore what does not apply.
struct TransportOptions {
  // Payloads above this are not delivered: the frame is skipped and reported
  // through FrameSink::OnOversizeFrame. The connection stays usable.
  uint64_t max_receive_message_size = kDefaultMaxMessageSize;
  uint32_t max_meta_size = kDefaultMaxMetaSize;
  // Mode of Unix socket files created by Listen.
  uint32_t unix_socket_mode = 0600;
  // A send that cannot make progress (the peer stops reading) fails with
  // DEADLINE_EXCEEDED after this long unless the frame's own deadline is sooner.
  absl::Duration send_stall_timeout = absl::Seconds(30);
  // Bytes a connection may queue for sending before Send blocks.
  size_t max_send_queue_bytes = 16u << 20;
  // Shared memory: bytes of each of the two rings of a connection (a power
  // of two, 4 KiB .. 1 GiB). Memory per connection is twice this plus one
  // page, plus the bulk areas (shm_bulk_bytes) as far as they are used.
  // 1 MiB lets a large message that does not go through a bulk area stream
  // through with the reader copying out one half while the writer fills the
  // other; small messages never need more than a few KiB.
  uint64_t shm_ring_bytes = 1u << 20;
  // Shared memory: bytes of each of the two bulk areas (rounded up to 4 KiB,
  // at most 1 GiB; 0 disables them). A message of 32 KiB or more is
  // serialized straight into the sender's bulk area and parsed there by the
  // receiver, two copies fewer than through the ring; when the area is full
  // it goes through the ring. 16 MiB holds four messages of the default
  // 4 MiB limit, or fifteen of 1 MiB in flight. Pages are touched only as
  // used, lowest first: a connection that has one large message in flight at
  // a time touches about that message's size, not the whole area.
  uint64_t shm_bulk_bytes = 16u << 20;
  // Shared memory: how long a reader polls its ring before sleeping on the
  // futex. Polling is what makes sub-microsecond round trips possible (a
  // futex wake-up across cores costs far more than a round trip) and costs
  // a core while it lasts; it is skipped when this process may not spin (one core, or
  // the process-wide spinner budget of cores-1 is in use). 0 disables it.
  // After sending a large message a reader polls longer, 1 us more per
  // 4 KiB sent (at most 2 ms more): the time the peer needs to read and
  // answer it, which would otherwise end in a futex wake-up per round trip.
  absl::Duration shm_spin = absl::Microseconds(50);
  // Sockets (unix, tcp): how long a reader polls its socket (non-blocking
  // receives) before sleeping: a caller awaiting its reply, and the I/O
  // thread after it handled input (a server, between a reply and the next
  // request). A sleeping reader's wake-up is most of a same-host round trip
  // (docs/performance-notes.md).
  // Subject to the same spinner budget as shm_spin, and adaptive: a reader
  // whose polls keep running out (e.g. a peer on another host that answers
  // in more than this) stops polling but for an occasional probe. 0
  // disables it: worth doing where CPU time is capped or billed (a cgroup
  // CPU quota, which the spinner budget cannot see) or latency matters
  // less than idle cores. Per call, polling costs less CPU than sleeping
  // on a VM, where a wake-up is expensive (docs/performance-notes.md).
  absl::Duration socket_spin = absl::Microseconds(50);
};

// Receives what arrives on a connection. Implemented by the runtime.
//
// Thread-safety: for one connection, calls never overlap and arrive in wire
// order, but successive calls may come from different threads (the
// transport's I/O thread, or a caller inside Connection::DriveUntil).
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // `frame` belongs to the transport, which reuses its buffers for the next
  // frame, and its bytes may be borrowed (locus/frame.h): a sink that keeps
  // the payload past the call takes it with TakePayload(), the meta by
  // copying meta_bytes().
  virtual void OnFrame(Frame& frame) = 0;
  // A well-formed frame whose payload exceeded max_receive_message_size; its
  // payload was discarded.
  virtual void OnOversizeFrame(const FrameHeader& header) = 0;
  // Called exactly once, last: the connection is closed (peer closed, I/O
  // error, malformed input, or Close()). `reason` says which.
  virtual void OnClosed(const absl::Status& reason) = 0;
};

// A bidirectional, framed connection; reliable and ordered unless
// reliable() says otherwise.
//
// Thread-safety: all methods are thread-safe. Lifetime: the owner must call
// Close() (or see OnClosed) before destroying it; the destructor waits until no
// FrameSink callback is running.
class Connection {
 public:
  virtual ~Connection() = default;

  // Starts delivering received frames to `sink`, which must stay valid until
  // OnClosed has returned. Call once.
  virtual void Start(FrameSink* sink) = 0;

  // Sends one frame. Frames from concurrent senders never interleave. Returns
  // UNAVAILABLE if the connection is closed, DEADLINE_EXCEEDED if the peer
  // does not take the bytes before `deadline` (the connection is then closed,
  // since a partial frame cannot be taken back).
  virtual absl::Status Send(const FrameHeader& header, absl::string_view meta,
                            absl::string_view payload, absl::Time deadline) = 0;

  // Writes a payload of exactly the length it is asked for into `out`;
  // false if it could not (nothing is sent then).
  using PayloadWriter = absl::FunctionRef<bool(char* out)>;

  // Sends one frame whose payload (header.payload_length bytes) is written
  // by `write_payload` into memory the transport chooses, so that a
  // transport with memory the peer can read (shared memory) takes a large
  // message without an intermediate copy. `write_payload` runs at most once,
  // on the calling thread, possibly while the transport holds its send lock:
  // it must not call into this connection. Errors as Send, plus INTERNAL if
  // `write_payload` fails. The default writes into a per-thread scratch
  // buffer and calls Send.
  virtual absl::Status SendWithPayloadWriter(const FrameHeader& header, absl::string_view meta,
                                             PayloadWriter write_payload, absl::Time deadline);

  // Whether SendWithFds can carry descriptors (contract 12): Unix-socket,
  // shared-memory and in-process connections. Never changes.
  virtual bool CanPassFds() const { return false; }

  // Sends one frame as Send does, with `fds` attached (contract 12). The
  // descriptors stay the caller's: by the time this returns the transport
  // has handed them to the kernel or holds duplicates of its own, so the
  // caller may close them at once; the peer receives duplicates in that
  // frame's Frame::fds, in this order. Errors as Send, plus (nothing sent
  // for any of them) INVALID_ARGUMENT for more than kMaxFdsPerFrame or a
  // descriptor that is not open (ValidateFdsToSend), FAILED_PRECONDITION
  // "<transport> connections cannot carry file descriptors" where
  // CanPassFds() is false, and RESOURCE_EXHAUSTED when the kernel or this
  // process refuses more descriptors in flight. The default: Send() for no
  // descriptors, else the checks and FAILED_PRECONDITION.
  virtual absl::Status SendWithFds(const FrameHeader& header, absl::string_view meta,
                                   absl::string_view payload, absl::Span<const int> fds,
                                   absl::Time deadline);

  // Closes the connection; OnClosed(reason) follows (once). Idempotent.
  virtual void Close(const absl::Status& reason) = 0;

  // Caller-driven receive: if no other thread is reading this connection,
  // reads and dispatches frames on the calling thread until `done()` is true
  // or `deadline` passes, and returns true. Returns false at once if the
  // transport cannot do that now; the caller then waits by other means and the
  // transport's own thread delivers. This saves a cross-thread wake-up per
  // call for synchronous callers. `done` is evaluated on the calling thread.
  virtual bool DriveUntil(absl::FunctionRef<bool()> done, absl::Time deadline) {
    (void)done;
    (void)deadline;
    return false;
  }

  // Background reads: whether the transport must read and deliver frames
  // while no caller is inside DriveUntil. Counted: each +1 is a user that
  // needs them (outstanding asynchronous calls, a side that serves calls, a
  // synchronous caller that could not drive), each -1 withdraws one. A
  // connection starts at 1. At 0 a transport may stop watching for input
  // (it must still notice the peer hanging up), so that synchronous calls
  // cost no interest changes; frames that arrive meanwhile are read by the
  // next caller that drives. Transports that always read ignore it.
  virtual void AdjustBackgroundReads(int delta) { (void)delta; }

  // Whether bytes of frames already accepted by Send are still queued here,
  // not yet handed to the peer (a full ring or socket buffer). Server
  // shutdown waits for them (within its deadline) before it closes, since
  // closing drops them. Any thread.
  virtual bool HasQueuedOutput() const { return false; }

  // False for a datagram transport (UDP): frames may be lost or reordered.
  // The runtime then bounds every call with a deadline and refuses
  // streaming calls, whose flow control needs every frame.
  virtual bool reliable() const { return true; }

  virtual const PeerInfo& peer() const = 0;
};

// A listening endpoint. Destroying it stops accepting (closes the socket and,
// for Unix sockets, removes the file it created).
class Listener {
 public:
  virtual ~Listener() = default;
  // The address actually bound, e.g. with the port chosen for "tcp://h:0".
  virtual std::string address() const = 0;
};

// Called for each accepted connection, on a transport thread. Must not block.
using AcceptCallback = absl::AnyInvocable<void(std::unique_ptr<Connection>)>;

class Transport {
 public:
  virtual ~Transport() = default;
  // Address schemes this transport serves, e.g. {"unix", "unix-abstract"}.
  virtual std::vector<std::string> schemes() const = 0;
  virtual absl::StatusOr<std::unique_ptr<Listener>> Listen(absl::string_view address,
                                                           const TransportOptions& options,
                                                           AcceptCallback on_accept) = 0;
  // Errors: INVALID_ARGUMENT (bad address), UNAVAILABLE (refused, unreachable),
  // DEADLINE_EXCEEDED.
  virtual absl::StatusOr<std::unique_ptr<Connection>> Connect(absl::string_view address,
                                                              const TransportOptions& options,
                                                              absl::Time deadline) = 0;
};

// Returns the scheme of `address`: "tcp" for "tcp://h:p", "unix" for
// "unix:/p", "unix-abstract" for "unix-abstract:name". Empty if none.
absl::string_view AddressScheme(absl::string_view address);

// Maps address schemes to transports. Thread-safe.
class TransportRegistry {
 public:
  // Registers `transport` for each of its schemes; replaces earlier entries.
  void Register(std::shared_ptr<Transport> transport);
  // nullptr if no transport serves `scheme`.
  Transport* Find(absl::string_view scheme) const;
  // The transport for `address`, or INVALID_ARGUMENT naming the known schemes.
  absl::StatusOr<Transport*> ForAddress(absl::string_view address) const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Transport>> by_scheme_ ABSL_GUARDED_BY(mu_);
};

// The registry Server and Connect use unless told otherwise: the built-in
// transports (unix, unix-abstract, tcp). Defined by the `locus` library, which
// links the built-in transports; the runtime core only declares it.
TransportRegistry& DefaultTransportRegistry();

}  // namespace locus

#endif  // LOCUS_TRANSPORT_H_
