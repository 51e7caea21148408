// A logging interceptor: one line per call when it ends (side, method,
// status, duration, metadata size), for a channel's or a server's calls.
// Streams also count their messages.
//
// Example:
//   locus::ChannelOptions options;
//   options.interceptors.push_back(std::make_shared<locus_samples::LoggingClientInterceptorFactory>(
//       [](const std::string& line) { std::cerr << line << "\n"; }));
#ifndef LOCUS_SAMPLES_INTERCEPTORS_LOGGING_INTERCEPTOR_H_
#define LOCUS_SAMPLES_INTERCEPTORS_LOGGING_INTERCEPTOR_H_

#include <functional>
#include <memory>
#include <string>

#include "locus/interceptor.h"

namespace locus_samples {

// Where lines go; called from the threads that end calls (thread-safe).
using LogSink = std::function<void(const std::string& line)>;

class LoggingClientInterceptorFactory final : public locus::ClientInterceptorFactory {
 public:
  explicit LoggingClientInterceptorFactory(LogSink sink) : sink_(std::move(sink)) {}
  std::unique_ptr<locus::ClientInterceptor> Create(const locus::ClientCallInfo& call) override;

 private:
  const LogSink sink_;
};

class LoggingServerInterceptorFactory final : public locus::ServerInterceptorFactory {
 public:
  explicit LoggingServerInterceptorFactory(LogSink sink) : sink_(std::move(sink)) {}
  std::unique_ptr<locus::ServerInterceptor> Create(const locus::ServerCallInfo& call) override;

 private:
  const LogSink sink_;
};

}  // namespace locus_samples

#endif  // LOCUS_SAMPLES_INTERCEPTORS_LOGGING_INTERCEPTOR_H_
