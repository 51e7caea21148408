// Channels: a client's connection to a server, from which stubs are made.
//
// Example:
//   absl::StatusOr<std::shared_ptr<locus::Channel>> channel =
//       locus::Connect("tcp://localhost:7000");
//   if (!channel.ok()) return channel.status();
//   demo::Echo::Stub stub(*channel);
//   absl::StatusOr<demo::SayReply> reply = stub.Say(request);
//
// Threading model (client side): a synchronous call sends its request on the
// calling thread, then, if no other thread is reading the connection, reads it
// itself (socket or shared-memory ring) until its reply arrives (no thread
// hand-off, so no cross-core wake-up on the reply path); otherwise it sleeps
// until the thread that is reading hands it the reply. On an in-process
// channel (transport_name() == "inproc") the server's handler runs on the
// calling thread; asynchronous calls run it before StartUnary returns, or on
// the server's handler pool if it has one. Asynchronous callbacks (and
// Future::Then continuations, locus/future.h) run on whichever thread read the
// reply: a transport I/O thread or a synchronous caller; they must not block.
// That thread holds the connection's reader, so a synchronous call over the
// same connection from a callback fails at once with FAILED_PRECONDITION
// (its reply could never be read); make such calls asynchronous. Streams
// likewise: a Read, Write or Finish that would wait there ends the stream
// with FAILED_PRECONDITION; use streams from another thread.
// Calls the server makes back on this client (on objects it exported:
// ChannelOptions::bootstrap, or references passed in requests; see
// locus/object.h) run on the process's object pool, never on the thread
// that reads the connection: such a handler may call the server again,
// synchronously, and re-entrant chains complete.
// Interceptors (ChannelOptions::interceptors, locus/interceptor.h) run on
// the calling thread, except after an asynchronous call's reply, where they
// run with its callback.
// A Channel is thread-safe and meant to be shared by many threads and stubs.
//
// Connection life: a channel holds one connection at a time and makes a new
// one when it broke or the server sent GOAWAY. After a failed connection
// attempt it waits out a backoff (ChannelOptions::reconnect_backoff) before
// the next; calls made meanwhile fail at once with UNAVAILABLE, or wait with
// CallOptions::wait_for_ready. A call the server never saw (the server had
// sent GOAWAY, or it failed before it was sent) is retried transparently on
// the next connection; a synchronous call may be retried so any time, an
// asynchronous one only while StartUnary runs (its request is gone after)
// unless a retry policy applies to its method (locus/retry_policy.h), which
// may also retry calls that failed with one of its codes. A stream is
// opened again likewise while it opens, and with a policy until committed.
// Retries happen beneath the interceptors, which see one call. On a target
// naming several servers the balancer, not the backend, sends a call no
// server saw again, to another backend (locus/balancing.h).
//
// Example (keepalive and a retry policy):
//   locus::ChannelOptions options;
//   options.keepalive_time = absl::Seconds(10);
//   options.keepalive_timeout = absl::Seconds(2);
//   options.retry_policies["/demo.Echo/"] = locus::RetryPolicy{
//       3, absl::Milliseconds(50), absl::Seconds(1), 2,
//       locus::RetryPolicy::Code(absl::StatusCode::kUnavailable)};
//   auto channel = locus::Connect("tcp://localhost:7000", options);
#ifndef LOCUS_CHANNEL_H_
#define LOCUS_CHANNEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "locus/balancing.h"
#include "locus/call_options.h"
#include "locus/retry_policy.h"
#include "locus/interceptor.h"
#include "locus/service.h"
#include "locus/stream.h"
#include "locus/transport.h"

namespace google::protobuf {
class MessageLite;
}  // namespace google::protobuf

namespace locus {

struct ChannelOptions {
  // Replies larger than this fail the call with RESOURCE_EXHAUSTED.
  uint64_t max_receive_message_size = kDefaultMaxMessageSize;
  // Requests larger than this fail with RESOURCE_EXHAUSTED without being sent.
  uint64_t max_send_message_size = kDefaultMaxMessageSize;
  // The least time one connection attempt (connecting plus the handshake,
  // in Connect and on reconnects) is given: gRPC's MIN_CONNECT_TIMEOUT. An
  // attempt may also run until the backoff would allow the next one
  // (reconnect_backoff), and never past the deadline of the call that
  // makes it.
  absl::Duration connect_timeout = absl::Seconds(20);
  // Backoff between failed connection attempts (locus/retry_policy.h). A
  // target naming several servers uses balancing.backoff for each backend
  // instead.
  ConnectionBackoff reconnect_backoff;
  // Retry policies that override the methods' (locus.retry) options, by
  // full method name ("/pkg.Service/Method") or for every method of a
  // service ("/pkg.Service/"; a method's own entry wins). A policy with
  // max_attempts 1 turns a method's retries off. Costs a lookup per call
  // only while not empty.
  absl::flat_hash_map<std::string, RetryPolicy> retry_policies;
  // Keepalive (gRPC's GRPC_ARG_KEEPALIVE_TIME_MS and ..._TIMEOUT_MS): after
  // keepalive_time without a frame from the server, the channel sends PING;
  // if nothing arrives within keepalive_timeout, the connection is closed
  // and its calls fail with UNAVAILABLE, as when a peer dies. That is how a
  // server that stopped answering (a host gone without a word, a stopped
  // process, a dropped TCP path) is noticed, which calls without a deadline
  // would otherwise wait for for ever. Only while calls (or streams) are
  // in progress unless keepalive_without_calls. Off by default, as in gRPC.
  // Hazard: a server whose handlers run inline (ServerOptions::
  // handler_threads = 0) reads nothing while one runs: a handler running
  // longer than keepalive_time + keepalive_timeout has its connection
  // closed. Checked every quarter of keepalive_time, so a PING goes out
  // after keepalive_time to 1.25 times that of silence. At least 10 s, as
  // in gRPC: a shorter (positive) time is raised to that.
  absl::Duration keepalive_time = absl::InfiniteDuration();
  absl::Duration keepalive_timeout = absl::Seconds(20);
  bool keepalive_without_calls = false;
  // nullptr: DefaultTransportRegistry().
  TransportRegistry* transports = nullptr;
  // Which transports the channel may end on. After the handshake on the
  // given address, a channel moves to the closest transport the server
  // offers: "inproc" (server in this process: direct calls), "shm" (same
  // host: shared memory), "unix" (same host), else it stays where it
  // connected. "" means all (or $LOCUS_TRANSPORTS when that is set);
  // "shm,unix" allows only those (forcing: Connect fails if the channel
  // cannot end on one of them); "-shm,-inproc" forbids those.
  std::string allowed_transports;
  // Shared memory: bytes per ring and per bulk area (two of each per
  // connection; see TransportOptions::shm_ring_bytes and shm_bulk_bytes for
  // the reasoning behind the defaults) and how long a waiting caller polls
  // before sleeping.
  uint64_t shm_ring_bytes = TransportOptions().shm_ring_bytes;
  uint64_t shm_bulk_bytes = TransportOptions().shm_bulk_bytes;
  absl::Duration shm_spin = TransportOptions().shm_spin;
  // Unix and TCP sockets: how long a waiting caller (and the I/O thread
  // reading replies of asynchronous calls) polls the socket before sleeping
  // (TransportOptions::socket_spin: adaptive, 0 disables it).
  absl::Duration socket_spin = TransportOptions().socket_spin;
  // Bytes of stream messages the server may send on one streaming call
  // before this side has read them (see locus/stream.h).
  uint64_t stream_window_bytes = kDefaultStreamWindowBytes;
  // Datagram transports (udp://): the deadline of calls that set none; a
  // lost datagram would otherwise leave them waiting forever.
  absl::Duration datagram_call_timeout = absl::Seconds(10);
  // An object this client offers the server with each connection, so that
  // the server can call it back without a call passing a reference first:
  // handlers reach it with ServerContext::caller_object(). Calls on it run
  // on the object pool (locus/object.h). nullptr: none.
  std::shared_ptr<Service> bootstrap;
  // Interceptors of every call of the channel, outermost first
  // (locus/interceptor.h). Empty: none, at no cost.
  std::vector<std::shared_ptr<ClientInterceptorFactory>> interceptors;
  // Targets naming several servers (locus/balancing.h): the policy
  // (pick-first by default, or round-robin), backoff, re-resolution, retries.
  BalancingOptions balancing;
};

// Thread-safe. Implemented by the runtime; users get one from Connect().
class Channel {
 public:
  virtual ~Channel() = default;

  // Synchronous unary call: returns when the reply has been parsed into
  // `*response`, the deadline passed, or the call failed.
  [[nodiscard]] virtual absl::Status CallUnary(const RpcMethod& method,
                                 const google::protobuf::MessageLite& request,
                                 google::protobuf::MessageLite* response,
                                 const CallOptions& options) = 0;

  // Asynchronous unary call. `request` may be destroyed when this returns;
  // `response` must stay valid until `done` runs. `done` runs exactly once,
  // possibly before StartUnary returns (e.g. on an immediate error).
  virtual void StartUnary(const RpcMethod& method, const google::protobuf::MessageLite& request,
                          google::protobuf::MessageLite* response, const CallOptions& options,
                          absl::AnyInvocable<void(absl::Status) &&> done) = 0;

  // Opens a streaming call (locus/stream.h). `request`: the request of a
  // server-streaming method (sent at once, then the client half-closes);
  // nullptr for the other kinds. `response`: the response of a
  // client-streaming method, written before Finish returns OK; it must stay
  // valid until then; nullptr for the other kinds. Never null: a call that
  // cannot start returns a stream whose Finish reports why.
  virtual std::unique_ptr<ClientCallStream> OpenStream(const RpcMethod& method,
                                                       const google::protobuf::MessageLite* request,
                                                       google::protobuf::MessageLite* response,
                                                       const CallOptions& options) = 0;

  // The transport the channel is on now: "inproc", "shm", "unix", "tcp".
  // A channel to several servers: those of its connected backends, in the
  // target's order, each once ("shm,tcp"); see locus::DescribeBackends.
  virtual std::string transport_name() const = 0;
  // The address given to Connect.
  virtual const std::string& target() const = 0;
};

// Connects to `address` ("unix:/path", "unix-abstract:name",
// "tcp://host:port", "tcp://[::1]:port") and completes the Locus handshake.
// If the connection later breaks, the next call reconnects (after a failed
// connection attempt, not before ChannelOptions::reconnect_backoff allows).
// "fd:N" connects over a connected Unix socket this process already has as
// descriptor N (an end of a socketpair; "shm-fd:N" moves that connection to
// shared memory): Connect takes N, so a second Connect fails ("not open"),
// and the channel never reconnects (its calls fail UNAVAILABLE once the
// connection is gone). locus/spawn.h builds on it.
// Several servers: a comma-separated list ("tcp://a:7000,b:7000",
// "unix:/run/a.sock,tcp://b:7000") or a DNS name ("dns:///host:port"); the
// channel spreads calls over them as options.balancing says. Connect
// returns once one is connected (pick-first) or each has connected or
// failed (round-robin), and fails UNAVAILABLE if none connected
// (locus/balancing.h).
[[nodiscard]] absl::StatusOr<std::shared_ptr<Channel>> Connect(
    absl::string_view address, const ChannelOptions& options = {});

}  // namespace locus

#endif  // LOCUS_CHANNEL_H_
