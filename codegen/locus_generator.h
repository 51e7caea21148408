// LocusGenerator: the protoc code generator behind `locusc --locus_out` and
// `protoc-gen-locus`. For each .proto file it writes `<name>.locus.h` and
// `<name>.locus.cc` holding, per service, the client StubInterface and Stub
// (stub_generator.h), the server-side Service base class and the method
// table, and the typed accessors of the file's object-reference fields
// (object_refs.h); with the option generate_mock_code=true also
// `<name>.locus_mock.h` (gmock stubs). See codegen/README.md for the
// generated API.
#ifndef LOCUS_CODEGEN_LOCUS_GENERATOR_H_
#define LOCUS_CODEGEN_LOCUS_GENERATOR_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/compiler/code_generator.h"
#include "google/protobuf/descriptor.h"

namespace locus {
namespace codegen {

class LocusGenerator : public google::protobuf::compiler::CodeGenerator {
 public:
  LocusGenerator() = default;
  ~LocusGenerator() override = default;

  // Validates then generates one file. On failure `*error` holds one line per
  // problem, each "file.proto:LINE:COL: message".
  bool Generate(const google::protobuf::FileDescriptor* file, const std::string& parameter,
                google::protobuf::compiler::GeneratorContext* context,
                std::string* error) const override;

  // Validates every file first (reporting all problems of all files), then
  // generates. Unlike the default it does not prefix errors with the file
  // name: each error line already starts with its location.
  bool GenerateAll(const std::vector<const google::protobuf::FileDescriptor*>& files,
                   const std::string& parameter,
                   google::protobuf::compiler::GeneratorContext* context,
                   std::string* error) const override;

  uint64_t GetSupportedFeatures() const override { return FEATURE_PROTO3_OPTIONAL; }

  // Checks the Locus rules ((locus.oneway), (locus.wire_name) and
  // (locus.interface) well used, ...). Appends one "file.proto:LINE:COL:
  // message" per problem.
  static void Validate(const google::protobuf::FileDescriptor* file,
                       std::vector<std::string>* errors);
};

// Helpers shared with object_refs.cc and tests.

// True for C++ keywords (and a few reserved identifiers) that generated code
// cannot use as a class or method name.
bool IsCppKeyword(const std::string& name);

// The C++ name of a service's class: its proto name, with `_` appended if it
// is a C++ keyword.
std::string ServiceClassName(const google::protobuf::ServiceDescriptor* service);

// The C++ name of each method of `service`, in declaration order (see the
// mangling rules in codegen/README.md).
std::vector<std::string> MethodCppNames(const google::protobuf::ServiceDescriptor* service);

// `name` made distinct, try `n` (1, 2, ...): "name_", "name_2", "name_3",
// ...; for a name already ending in "_": "name_1", "name_2", ... (never
// "__"). See "Name mangling" in codegen/README.md.
std::string MangledName(const std::string& name, int n);

// "::pkg::Service": ServiceClassName() in the namespace of the service's
// package.
std::string QualifiedServiceClassName(const google::protobuf::ServiceDescriptor* service);

// "dir/foo.locus.h" for dir/foo.proto: the header generated for `file`.
std::string LocusHeaderName(const google::protobuf::FileDescriptor* file);

// Dot-separated identifiers: "pkg.Service", "Service", "a.b.c".
bool IsValidDottedIdentifier(absl::string_view name);

// The leading comments of `location` as C++ `//` lines, each preceded by
// `indent`; "" if there are none.
std::string CommentLines(const google::protobuf::SourceLocation& location,
                         absl::string_view indent);

// 1-based "file.proto:LINE:COL" of the element at `path` (a SourceLocation
// path) in `file`, or of the closest enclosing element protoc recorded.
std::string SourcePosition(const google::protobuf::FileDescriptor* file, std::vector<int> path);

}  // namespace codegen
}  // namespace locus

#endif  // LOCUS_CODEGEN_LOCUS_GENERATOR_H_
