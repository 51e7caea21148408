// Minimal logging for the runtime and transports (Abseil 20220623 has no
// logging library). Lines go to stderr as
//   "locus W 14:03:22.123456 file.cc:42] message".
// LOCUS_LOG(FATAL) aborts after logging. Set LOCUS_LOG_LEVEL=INFO|WARNING|ERROR
// (default WARNING) to choose what is printed.
//
// Example:
//   LOCUS_LOG(WARNING) << "closing connection from " << peer << ": " << status;
//   LOCUS_LOG_FIRST_N(WARNING, 1) << "shared memory unavailable: " << reason;
#ifndef LOCUS_BASE_LOG_H_
#define LOCUS_BASE_LOG_H_

#include <atomic>
#include <sstream>

#include "absl/base/log_severity.h"
#include "absl/status/status.h"

namespace locus::internal {

bool LogEnabled(absl::LogSeverity severity);

class LogMessage {
 public:
  LogMessage(const char* file, int line, absl::LogSeverity severity);
  ~LogMessage();  // writes the line; aborts for kFatal
  std::ostream& stream() { return stream_; }

 private:
  const char* file_;
  int line_;
  absl::LogSeverity severity_;
  std::ostringstream stream_;
};

// Swallows the stream when a level is disabled.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace locus::internal

#define LOCUS_LOG_SEVERITY_INFO ::absl::LogSeverity::kInfo
#define LOCUS_LOG_SEVERITY_WARNING ::absl::LogSeverity::kWarning
#define LOCUS_LOG_SEVERITY_ERROR ::absl::LogSeverity::kError
#define LOCUS_LOG_SEVERITY_FATAL ::absl::LogSeverity::kFatal

#define LOCUS_LOG(severity)                                                        \
  !::locus::internal::LogEnabled(LOCUS_LOG_SEVERITY_##severity)                    \
      ? (void)0                                                                    \
      : ::locus::internal::LogVoidify() &                                          \
            ::locus::internal::LogMessage(__FILE__, __LINE__, LOCUS_LOG_SEVERITY_##severity) \
                .stream()

// Logs only the first `n` times this statement is reached (process-wide).
#define LOCUS_LOG_FIRST_N(severity, n)                                             \
  for (static std::atomic<int> locus_log_count{0};                                 \
       locus_log_count.load(std::memory_order_relaxed) < (n) &&                    \
       locus_log_count.fetch_add(1, std::memory_order_relaxed) < (n);)             \
  LOCUS_LOG(severity)

#endif  // LOCUS_BASE_LOG_H_
