// Running interceptors (locus/interceptor.h) around one call: the server's
// side (ServerInterception, used by ConnectionCore::Serve and the in-process
// dispatcher) and the client's (InterceptChannel: a Channel that wraps the
// one Connect made, so that ChannelImpl's call path is untouched and a
// channel without interceptors is not wrapped at all).
//
// Example (server side, what ConnectionCore::Serve does):
//   std::optional<ServerInterception> interception;
//   if (options_.interceptors != nullptr) interception.emplace(*options_.interceptors, method, context);
//   absl::Status started = interception->Start();   // non-OK: reject, handler not run
//
// Thread-safety: one call's interception is used by the threads that run
// that call's handler or stream operations, as its hooks are (see
// locus/interceptor.h); the factory lists are immutable once made.
#ifndef LOCUS_RUNTIME_INTERNAL_INTERCEPTION_H_
#define LOCUS_RUNTIME_INTERNAL_INTERCEPTION_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "locus/channel.h"
#include "locus/interceptor.h"
#include "locus/service.h"
#include "locus/stream.h"

namespace google::protobuf {
class MessageLite;
}  // namespace google::protobuf

namespace locus::internal {

// A server's interceptor factories (ServerOptions::interceptors), shared by
// its connections and its in-process dispatcher; never empty (a server
// without interceptors shares none).
using ServerInterceptors = std::vector<std::shared_ptr<ServerInterceptorFactory>>;

// The interceptors of one call being served. Made only when there are
// factories; lives on the serving thread's stack for the call.
class ServerInterception {
 public:
  ServerInterception(const ServerInterceptors& factories, const RpcMethod& method,
                     ServerContext& context);
  ServerInterception(const ServerInterception&) = delete;
  ServerInterception& operator=(const ServerInterception&) = delete;

  // OnStart of each interceptor in order, until one fails: its status.
  absl::Status Start();
  // A message from the client, parsed (in order).
  void Received(const google::protobuf::MessageLite& message);
  // A message to the client (last to first).
  void Sending(const google::protobuf::MessageLite& message);
  // OnFinish of each interceptor that started, last to first; at most once
  // (later calls do nothing).
  void Finish(absl::Status& status);

 private:
  ServerCallInfo info_;
  absl::InlinedVector<std::unique_ptr<ServerInterceptor>, 4> interceptors_;
  size_t started_ = 0;  // interceptors whose OnStart ran
  bool finished_ = false;
};

// The handler's view of a stream: shows each message read and written to
// the interception, then hands on to `stream` (the StreamCall).
class InterceptedServerStream final : public ServerCallStream {
 public:
  InterceptedServerStream(ServerCallStream& stream, ServerInterception& interception)
      : stream_(stream), interception_(interception) {}
  bool Read(google::protobuf::MessageLite* message) override;
  bool Write(const google::protobuf::MessageLite& message) override;

 private:
  ServerCallStream& stream_;
  ServerInterception& interception_;
};

// Where the handler's outcome goes when intercepted: the reply hook and
// OnFinish run, then `sink` (the core's) gets the (possibly replaced)
// status. At most once.
class InterceptedReplySink final : public ReplySink {
 public:
  InterceptedReplySink(ReplySink& sink, ServerInterception& interception)
      : sink_(sink), interception_(interception) {}
  void Finish(const absl::Status& status, const google::protobuf::MessageLite* reply) override;

 private:
  ReplySink& sink_;
  ServerInterception& interception_;
  bool finished_ = false;
};

// `channel`, with every call run through interceptors made by `factories`
// (outermost first); `channel` itself if there are none.
std::shared_ptr<Channel> InterceptChannel(std::shared_ptr<Channel> channel,
                                          std::vector<std::shared_ptr<ClientInterceptorFactory>> factories);
// The channel InterceptChannel wrapped, or `channel` if it is not such a
// wrapper (for runtime lookups that need the channel Connect made).
Channel& UninterceptedChannel(Channel& channel);
const Channel& UninterceptedChannel(const Channel& channel);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_INTERCEPTION_H_
