// locus::Server: serves registered services on one or more addresses.
//
// Example:
//   MyEcho service;                      // derives from demo::Echo::Service
//   locus::Server server;
//   absl::Status status = server.RegisterService(&service);
//   if (status.ok()) status = server.AddListeningAddress("unix:/tmp/echo.sock");
//   if (status.ok()) status = server.AddListeningAddress("tcp://0.0.0.0:7000");
//   if (status.ok()) status = server.Start();
//   if (status.ok()) server.Wait();      // until Shutdown() from another thread
//
// Example (tests: a server with no address, called in-process):
//   locus::Server server;
//   if (!server.RegisterService(&service).ok() || !server.Start().ok()) ...;
//   absl::StatusOr<std::shared_ptr<locus::Channel>> channel = server.InProcessChannel();
//   demo::Echo::Stub stub(*channel);     // calls run the handlers directly
//
// Threading model (server side): each connection is read by one transport I/O
// thread. By default a request's handler runs inline on that thread, right
// after its frame is read, and its reply is written from there: no thread
// hand-off, so no cross-core wake-up on the call path. A handler that blocks
// therefore delays other calls on the same connection; set
// ServerOptions::handler_threads to run handlers on a pool instead. On
// shared-memory connections the I/O thread is the connection's reader
// thread; for in-process clients (same process) handlers run on the
// caller's thread (see locus/channel.h). Streaming handlers (locus/stream.h)
// block in Read and Write, so each open stream runs its handler on a thread
// of a per-server pool that grows with the number of streams open at once
// (at most 1024 threads; idle ones exit after 10 s). While a streaming
// handler waits in Read or Write it may read the connection itself (no
// thread hand-off per message), and then runs the handlers of other calls
// that arrive meanwhile inline, as an I/O thread would: an inline unary
// handler must not wait for a streaming handler of the same connection.
// Calls on exported objects (ServerOptions::bootstrap, references handed out
// with locus::SetRef; see locus/object.h) run as the services' handlers do,
// inline or on the handler pool. A handler that calls its client back synchronously (a callback
// object the client passed) must not run inline on the I/O thread that reads
// that client's connection, whose reply it waits for: such a call fails
// FAILED_PRECONDITION at once. Set handler_threads, call back
// asynchronously, or serve the entry point as an exported object.
// Interceptors (ServerOptions::interceptors, locus/interceptor.h) run on the
// handler's thread, around it. A handler that makes calls on behalf of its
// own (CallOptions::FromServerContext) and must see its client's
// cancellation needs handler_threads: an inline handler holds the thread
// that would read the client's CANCEL (its deadline still propagates).
#ifndef LOCUS_SERVER_H_
#define LOCUS_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "locus/channel.h"
#include "locus/interceptor.h"
#include "locus/service.h"
#include "locus/transport.h"

namespace locus {

namespace internal {
class ServerImpl;
}  // namespace internal

struct ServerOptions {
  // Requests larger than this fail with RESOURCE_EXHAUSTED; the connection
  // stays usable.
  uint64_t max_receive_message_size = kDefaultMaxMessageSize;
  // Replies larger than this are replaced by RESOURCE_EXHAUSTED.
  uint64_t max_send_message_size = kDefaultMaxMessageSize;
  // Mode of Unix socket files the server creates.
  uint32_t unix_socket_mode = 0600;
  // 0: handlers run inline on I/O threads (lowest latency). N > 0: handlers
  // run on a pool of N threads (handlers may block without stalling others).
  int handler_threads = 0;
  // nullptr: DefaultTransportRegistry().
  TransportRegistry* transports = nullptr;
  // If not empty, only clients running as one of these uids are served on
  // transports that know the client's credentials (Unix sockets, shared
  // memory, in-process calls); others are refused during the handshake.
  // TCP connections carry no credentials and are not affected.
  std::vector<uid_t> allowed_uids;
  // Shared memory: how long a connection's reader thread polls its ring
  // before sleeping (TransportOptions::shm_spin). Ring and bulk area sizes
  // are the client's choice (ChannelOptions::shm_ring_bytes, shm_bulk_bytes).
  absl::Duration shm_spin = TransportOptions().shm_spin;
  // Unix and TCP sockets: how long an I/O thread polls a connection for
  // the next request after handling one, before sleeping in epoll
  // (TransportOptions::socket_spin: adaptive, 0 disables it).
  absl::Duration socket_spin = TransportOptions().socket_spin;
  // A client that stops reading its replies is disconnected after this long
  // without taking a byte of them (replies queue meanwhile; the server never
  // blocks its I/O threads on one client).
  absl::Duration send_stall_timeout = TransportOptions().send_stall_timeout;
  // Bytes of stream messages a client may send on one streaming call before
  // its handler has read them (see locus/stream.h).
  uint64_t stream_window_bytes = kDefaultStreamWindowBytes;
  // Streaming calls one connection may have open at once; more are refused
  // with RESOURCE_EXHAUSTED (gRPC's MAX_CONCURRENT_STREAMS). Each open
  // stream holds a handler thread and up to a window of unread messages.
  size_t max_concurrent_streams = 100;
  // An object offered to every client with the handshake (Cap'n Proto's
  // bootstrap interface): a client gets it with locus::Remote<Foo>::Bootstrap(channel).
  // Calls on it run on the object pool (locus/object.h), as on any
  // exported object. nullptr: none.
  std::shared_ptr<Service> bootstrap;
  // Keepalive, as ChannelOptions::keepalive_time and keepalive_timeout: a
  // client connection silent for keepalive_time gets a PING, and is closed
  // if nothing arrives within keepalive_timeout (its handlers see
  // IsCancelled()). Only while calls are in progress on it unless
  // keepalive_without_calls. Off by default. A synchronous client that is
  // not waiting for a call reads nothing, so it answers such a PING only
  // when it next calls: keepalive_without_calls would close it.
  absl::Duration keepalive_time = absl::InfiniteDuration();
  absl::Duration keepalive_timeout = absl::Seconds(20);
  bool keepalive_without_calls = false;
  // gRPC's GRPC_ARG_MAX_CONNECTION_IDLE_MS: a connection without a call in
  // progress either way for this long is closed, after a GOAWAY (its
  // client reconnects when it next calls). Connections that carry object
  // references (locus/object.h) are never idle. Off by default.
  absl::Duration max_connection_idle = absl::InfiniteDuration();
  // gRPC's GRPC_ARG_MAX_CONNECTION_AGE_MS and ..._AGE_GRACE_MS: a
  // connection this old (+-10%, so that connections made together do not
  // all go at once) gets GOAWAY: its calls in progress go on, new ones go
  // to a new connection (the client retries the calls the GOAWAY refused).
  // It is closed once its calls are done, or max_connection_age_grace after
  // the GOAWAY, whichever comes first (calls still running then fail with
  // UNAVAILABLE). Connections that carry object references are exempt: the
  // references live and die with them. Off by default.
  absl::Duration max_connection_age = absl::InfiniteDuration();
  absl::Duration max_connection_age_grace = absl::InfiniteDuration();
  // Interceptors of every call to the registered services, outermost first
  // (locus/interceptor.h); one may reject a call before its handler runs.
  // Empty: none, at no cost.
  std::vector<std::shared_ptr<ServerInterceptorFactory>> interceptors;
};

// Thread-safety: configure (RegisterService, AddListeningAddress) before
// Start(), from one thread; Shutdown() and Wait() may be called from any.
class Server {
 public:
  explicit Server(ServerOptions options = {});
  ~Server();  // Shutdown(Now()) if still running.
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // `service` is not owned and must outlive the server. ALREADY_EXISTS if a
  // service of the same name is registered.
  [[nodiscard]] absl::Status RegisterService(Service* service);
  // May be called several times to listen on several addresses:
  // "unix:/path", "unix-abstract:name", "shm:/path" (a Unix socket that
  // also takes shared-memory clients), "tcp://host:port", "udp://host:port",
  // or "fd:N": the one connection on descriptor N, a connected Unix socket
  // this process has (e.g. an inherited socketpair end; Start takes it; it
  // is not named in references to this process's objects).
  [[nodiscard]] absl::Status AddListeningAddress(std::string address);
  // Binds every address; fails (and listens on none) if any fails. A server
  // with no address serves only its in-process channels (InProcessChannel).
  [[nodiscard]] absl::Status Start();
  // Addresses actually bound (e.g. "tcp://127.0.0.1:41234" for port 0), in
  // the order added. Valid after Start().
  std::vector<std::string> listening_addresses() const;

  // A channel to this server that needs no address and no transport (gRPC's
  // Server::InProcessChannel): unary calls run the handlers directly, on the
  // caller's thread (or, for asynchronous calls, on the handler pool if
  // there is one), as any in-process channel's do (locus/channel.h); streams
  // go over an in-process connection; references to objects resolve
  // in-process. Of `options`, the message size limits, stream_window_bytes,
  // connect_timeout (for the in-process stream connection) and bootstrap
  // apply; the transport ones do not. Its transport_name() is "inproc", its
  // target() "inproc:". The channel never moves elsewhere: after Shutdown
  // its calls fail UNAVAILABLE. FAILED_PRECONDITION before Start() or after
  // Shutdown(). Thread-safe.
  [[nodiscard]] absl::StatusOr<std::shared_ptr<Channel>> InProcessChannel(
      const ChannelOptions& options = {});

  // Stops accepting connections and calls, lets calls in progress finish
  // until `deadline`, then closes every connection (failing what remains
  // with UNAVAILABLE at the clients) and cancels the in-process calls still
  // running (their handlers see IsCancelled(), their callers get
  // UNAVAILABLE when they return). Idempotent.
  void Shutdown(absl::Time deadline = absl::Now());
  // Blocks until Shutdown() has completed.
  void Wait();

 private:
  std::unique_ptr<internal::ServerImpl> impl_;
};

}  // namespace locus

#endif  // LOCUS_SERVER_H_
