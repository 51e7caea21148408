#include "base/log.h"

#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

namespace locus::internal {
namespace {

absl::LogSeverity ThresholdFromEnv() {
  const char* level = std::getenv("LOCUS_LOG_LEVEL");
  if (level == nullptr) return absl::LogSeverity::kWarning;
  if (std::strcmp(level, "INFO") == 0) return absl::LogSeverity::kInfo;
  if (std::strcmp(level, "ERROR") == 0) return absl::LogSeverity::kError;
  return absl::LogSeverity::kWarning;
}

}  // namespace

bool LogEnabled(absl::LogSeverity severity) {
  static const absl::LogSeverity threshold = ThresholdFromEnv();
  return severity >= threshold;
}

LogMessage::LogMessage(const char* file, int line, absl::LogSeverity severity)
    : file_(file), line_(line), severity_(severity) {}

LogMessage::~LogMessage() {
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm local;
  localtime_r(&tv.tv_sec, &local);
  const char* base = std::strrchr(file_, '/');
  base = base == nullptr ? file_ : base + 1;
  char prefix[96];
  std::snprintf(prefix, sizeof(prefix), "locus %c %02d:%02d:%02d.%06ld %s:%d] ",
                absl::LogSeverityName(severity_)[0], local.tm_hour, local.tm_min, local.tm_sec,
                static_cast<long>(tv.tv_usec), base, line_);
  std::string text = prefix + stream_.str() + "\n";
  (void)!write(STDERR_FILENO, text.data(), text.size());
  if (severity_ == absl::LogSeverity::kFatal) std::abort();
}

}  // namespace locus::internal
