// The client side of what locusc generates for a service Foo:
// Foo::StubInterface (the stub's methods, pure virtual), Foo::Stub (final,
// over a Channel) and Foo::NewStub in foo.locus.h/.cc, and, on request
// (generate_mock_code=true), MockFooStub in foo.locus_mock.h. See
// codegen/README.md, "Generated API" and "Mocks".
#ifndef LOCUS_CODEGEN_STUB_GENERATOR_H_
#define LOCUS_CODEGEN_STUB_GENERATOR_H_

#include <string>

#include "codegen/generator_util.h"
#include "google/protobuf/descriptor.h"

namespace locus {
namespace codegen {

// Inside `class Foo final { ... }`: StubInterface, Stub and NewStub.
void WriteStubDeclarations(Writer& w, const google::protobuf::ServiceDescriptor* service);

// In foo.locus.cc, in the package's namespace: the bodies of Foo::Stub's
// methods and Foo::NewStub. A method with (locus.default_timeout_ms) calls
// LocusApplyDefaultTimeout, which the file defines before them.
void WriteStubDefinitions(Writer& w, const google::protobuf::ServiceDescriptor* service);

// The whole of `<base>.locus_mock.h`: a gmock MockFooStub per service of
// `file` (none for a file without services).
std::string GenerateMockHeader(const google::protobuf::FileDescriptor* file,
                               const std::string& base);

}  // namespace codegen
}  // namespace locus

#endif  // LOCUS_CODEGEN_STUB_GENERATOR_H_
