#include "codegen/retry_policy.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codegen/locus_generator.h"
#include "locus/options.pb.h"

namespace locus {
namespace codegen {

namespace pb = ::google::protobuf;

namespace {

// FileDescriptorProto / ServiceDescriptorProto / MethodDescriptorProto field
// numbers, for SourceLocation paths, and the option's.
constexpr int kFileServiceField = 6;
constexpr int kServiceMethodField = 2;
constexpr int kMethodOptionsField = 4;
constexpr int kRetryField = 51802;
constexpr int kMaxAttempts = 5;  // locus::RetryPolicy::kMaxAttempts

// The canonical status codes by name, as absl::StatusCode spells them in C++.
struct CodeName {
  const char* name;
  const char* cpp;
};
constexpr CodeName kCodes[] = {
    {"CANCELLED", "kCancelled"},
    {"UNKNOWN", "kUnknown"},
    {"INVALID_ARGUMENT", "kInvalidArgument"},
    {"DEADLINE_EXCEEDED", "kDeadlineExceeded"},
    {"NOT_FOUND", "kNotFound"},
    {"ALREADY_EXISTS", "kAlreadyExists"},
    {"PERMISSION_DENIED", "kPermissionDenied"},
    {"RESOURCE_EXHAUSTED", "kResourceExhausted"},
    {"FAILED_PRECONDITION", "kFailedPrecondition"},
    {"ABORTED", "kAborted"},
    {"OUT_OF_RANGE", "kOutOfRange"},
    {"UNIMPLEMENTED", "kUnimplemented"},
    {"INTERNAL", "kInternal"},
    {"UNAVAILABLE", "kUnavailable"},
    {"DATA_LOSS", "kDataLoss"},
    {"UNAUTHENTICATED", "kUnauthenticated"},
};

const CodeName* FindCode(const std::string& name) {
  for (const CodeName& code : kCodes) {
    if (name == code.name) return &code;
  }
  return nullptr;
}

std::vector<int> RetryPath(const pb::MethodDescriptor* method) {
  return {kFileServiceField, method->service()->index(), kServiceMethodField, method->index(),
          kMethodOptionsField, kRetryField};
}

// The shortest decimal form that reads back as `value` exactly.
std::string DoubleLiteral(double value) {
  char buffer[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  std::string text = buffer;
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

}  // namespace

void ValidateRetryPolicies(const pb::FileDescriptor* file, std::vector<std::string>* errors) {
  for (int s = 0; s < file->service_count(); ++s) {
    const pb::ServiceDescriptor* service = file->service(s);
    for (int m = 0; m < service->method_count(); ++m) {
      const pb::MethodDescriptor* method = service->method(m);
      if (!method->options().HasExtension(::locus::retry)) continue;
      const ::locus::Retry& retry = method->options().GetExtension(::locus::retry);
      const std::string at =
          absl::StrCat(SourcePosition(file, RetryPath(method)), ": method ", method->full_name(), ": (locus.retry) ");
      if (method->options().GetExtension(::locus::oneway)) {
        errors->push_back(absl::StrCat(at, "is not valid on a oneway method (it learns no status to retry on)"));
        continue;
      }
      if (retry.max_attempts() < 2 || retry.max_attempts() > static_cast<uint32_t>(kMaxAttempts)) {
        errors->push_back(absl::StrCat(at, "max_attempts must be from 2 to ", kMaxAttempts, ", not ",
                                       retry.max_attempts()));
      }
      if (retry.initial_backoff_ms() == 0) {
        errors->push_back(absl::StrCat(at, "initial_backoff_ms must be above 0"));
      }
      if (retry.max_backoff_ms() < retry.initial_backoff_ms() || retry.max_backoff_ms() == 0) {
        errors->push_back(absl::StrCat(at, "max_backoff_ms (", retry.max_backoff_ms(),
                                       ") must be above 0 and at least initial_backoff_ms (",
                                       retry.initial_backoff_ms(), ")"));
      }
      if (!(retry.backoff_multiplier() > 0) || !std::isfinite(retry.backoff_multiplier())) {
        errors->push_back(absl::StrCat(at, "backoff_multiplier must be a number above 0, not ",
                                       retry.backoff_multiplier()));
      }
      if (retry.retryable_codes().empty()) {
        errors->push_back(absl::StrCat(at, "retryable_codes must name at least one status code"));
      }
      std::set<std::string> seen;
      for (const std::string& name : retry.retryable_codes()) {
        if (FindCode(name) == nullptr) {
          errors->push_back(absl::StrCat(at, "retryable_codes: \"", name,
                                         "\" is not a status code other than OK (like \"UNAVAILABLE\")"));
        } else if (!seen.insert(name).second) {
          errors->push_back(absl::StrCat(at, "retryable_codes: \"", name, "\" is listed twice"));
        }
      }
    }
  }
}

std::string RetryPolicyConstant(const pb::MethodDescriptor* method, const std::string& cpp_name) {
  if (!method->options().HasExtension(::locus::retry)) return "";
  return absl::StrCat("kLocusRetry_", ServiceClassName(method->service()), "_", cpp_name);
}

std::string RetryPolicyDefinitions(const pb::ServiceDescriptor* service,
                                   const std::vector<std::string>& cpp_names) {
  std::string out;
  for (int m = 0; m < service->method_count(); ++m) {
    const pb::MethodDescriptor* method = service->method(m);
    const std::string name = RetryPolicyConstant(method, cpp_names[m]);
    if (name.empty()) continue;
    const ::locus::Retry& retry = method->options().GetExtension(::locus::retry);
    std::vector<std::string> codes;
    for (const std::string& code : retry.retryable_codes()) {
      codes.push_back(absl::StrCat("::locus::RetryPolicy::Code(::absl::StatusCode::", FindCode(code)->cpp, ")"));
    }
    absl::StrAppend(&out, "// (locus.retry) of ", method->full_name(), ".\n", "constexpr ::locus::RetryPolicy ",
                    name, " = {\n", "    ", retry.max_attempts(), ", ::absl::Milliseconds(",
                    retry.initial_backoff_ms(), "), ::absl::Milliseconds(", retry.max_backoff_ms(), "), ",
                    DoubleLiteral(retry.backoff_multiplier()), ",\n    ",
                    absl::StrJoin(codes, " |\n        "), "};\n");
  }
  if (out.empty()) return out;
  return absl::StrCat("namespace {\n\n", out, "\n}  // namespace\n\n");
}

}  // namespace codegen
}  // namespace locus
