// What the parts of the Locus generator share: writing C++ text and files,
// namespaces, and the C++ names and kinds of a proto's messages and methods.
// Used by locus_generator.cc (the file, service classes, Service) and
// stub_generator.cc (the client API and its mock).
#ifndef LOCUS_CODEGEN_GENERATOR_UTIL_H_
#define LOCUS_CODEGEN_GENERATOR_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "codegen/locus_generator.h"
#include "google/protobuf/compiler/code_generator.h"
#include "google/protobuf/descriptor.h"

namespace locus {
namespace codegen {

// Accumulates generated text.
class Writer {
 public:
  void Add(absl::string_view text) { absl::StrAppend(&out_, text); }
  template <typename... Args>
  void Add(absl::string_view a, const Args&... args) {
    absl::StrAppend(&out_, a);
    Add(args...);
  }
  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

// Writes `content` to the output file `name`.
void WriteFile(google::protobuf::compiler::GeneratorContext* context, const std::string& name,
               const std::string& content);

// The DO-NOT-EDIT banner every generated file starts with.
void WriteBanner(Writer& w, const google::protobuf::FileDescriptor* file);

// The file's package as C++ namespaces ({} for no package), and the lines
// that open and close them.
std::vector<std::string> Namespaces(const google::protobuf::FileDescriptor* file);
void OpenNamespaces(Writer& w, const google::protobuf::FileDescriptor* file);
void CloseNamespaces(Writer& w, const google::protobuf::FileDescriptor* file);

// "dir/foo" for "dir/foo.proto".
std::string StripProto(absl::string_view name);

// "::pkg::Outer_Inner": the class protoc's C++ generator gives a message.
std::string MessageType(const google::protobuf::Descriptor* descriptor);

enum class Kind { kUnary, kClientStreaming, kServerStreaming, kBidiStreaming };
Kind KindOf(const google::protobuf::MethodDescriptor* method);

// (locus.default_timeout_ms) of `method`; 0 if unset.
uint32_t DefaultTimeoutMs(const google::protobuf::MethodDescriptor* method);

// The leading comments of `descriptor` as `//` lines, each after `indent`.
template <typename DescriptorT>
std::string LeadingComment(const DescriptorT* descriptor, absl::string_view indent) {
  google::protobuf::SourceLocation location;
  if (!descriptor->GetSourceLocation(&location)) return "";
  return CommentLines(location, indent);
}

}  // namespace codegen
}  // namespace locus

#endif  // LOCUS_CODEGEN_GENERATOR_UTIL_H_
