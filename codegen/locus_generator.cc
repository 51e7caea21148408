#include "codegen/locus_generator.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "codegen/generator_util.h"
#include "codegen/object_refs.h"
#include "codegen/retry_policy.h"
#include "codegen/stub_generator.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "locus/options.pb.h"

namespace locus {
namespace codegen {

namespace pb = ::google::protobuf;

namespace {

// FileDescriptorProto / ServiceDescriptorProto / MethodDescriptorProto field
// numbers, for SourceLocation paths.
constexpr int kFileServiceField = 6;
constexpr int kFileOptionsField = 8;
constexpr int kFileOptionsCcGenericServices = 16;
constexpr int kServiceMethodField = 2;
constexpr int kServiceOptionsField = 3;
constexpr int kMethodOptionsField = 4;
constexpr int kOnewayField = 51800;
constexpr int kWireNameField = 51810;

// Names generated code declares in the scope of a service class (`Foo`), of
// `Foo::Service` (incl. inherited from ::locus::Service) and of `Foo::Stub`.
// A method whose C++ name would be one of these is mangled (see README.md).
const std::set<std::string>& ReservedMemberNames() {
  static const auto* names = new std::set<std::string>{
      // Foo::Service and its base ::locus::Service.
      "Service", "Method", "name", "methods", "AddMethod",
      // Foo::Stub.
      "Stub", "channel", "channel_",
      // Foo::StubInterface (the class; its members are the stub's methods).
      "StubInterface",
      // Foo: kMethod<Name> must not be kMethods / kMethodCount.
      "s", "Count",
      // Foo.
      "NewStub", "kServiceName"};
  return *names;
}

std::vector<int> ServicePath(const pb::ServiceDescriptor* service) {
  return {kFileServiceField, service->index()};
}

std::vector<int> MethodPath(const pb::MethodDescriptor* method) {
  return {kFileServiceField, method->service()->index(), kServiceMethodField, method->index()};
}

std::string WireServiceName(const pb::ServiceDescriptor* service) {
  const std::string& wire_name = service->options().GetExtension(::locus::wire_name);
  return wire_name.empty() ? service->full_name() : wire_name;
}

std::string HeaderGuard(const std::string& base) {
  std::string guard = "LOCUS_GENERATED_";
  for (char c : base) guard += absl::ascii_isalnum(c) ? absl::ascii_toupper(c) : '_';
  return guard + "_LOCUS_H_";
}

// Escapes a string for a C++ string literal (names are identifiers, but be
// safe with anything).
std::string CEscape(absl::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

const char* RpcKindName(Kind kind) {
  switch (kind) {
    case Kind::kUnary: return "::locus::RpcKind::kUnary";
    case Kind::kClientStreaming: return "::locus::RpcKind::kClientStreaming";
    case Kind::kServerStreaming: return "::locus::RpcKind::kServerStreaming";
    case Kind::kBidiStreaming: return "::locus::RpcKind::kBidiStreaming";
  }
  return "";
}

// The parameters of a service method after `context`, by kind; with
// `named` false the names are commented out (unimplemented bodies).
std::string HandlerParams(const pb::MethodDescriptor* method, bool named) {
  const std::string req = MessageType(method->input_type());
  const std::string resp = MessageType(method->output_type());
  auto name = [named](absl::string_view n) {
    return named ? std::string(n) : absl::StrCat("/*", n, "*/");
  };
  switch (KindOf(method)) {
    case Kind::kUnary:
      return absl::StrCat("const ", req, "* ", name("request"), ", ", resp, "* ", name("response"));
    case Kind::kClientStreaming:
      return absl::StrCat("::locus::ServerReader<", req, ">* ", name("reader"), ", ", resp, "* ",
                          name("response"));
    case Kind::kServerStreaming:
      return absl::StrCat("const ", req, "* ", name("request"), ", ::locus::ServerWriter<", resp,
                          ">* ", name("writer"));
    case Kind::kBidiStreaming:
      return absl::StrCat("::locus::ServerReaderWriter<", resp, ", ", req, ">* ", name("stream"));
  }
  return "";
}

const char* HandlerFactory(Kind kind) {
  switch (kind) {
    case Kind::kUnary: return "MakeUnaryHandler";
    case Kind::kClientStreaming: return "MakeClientStreamingHandler";
    case Kind::kServerStreaming: return "MakeServerStreamingHandler";
    case Kind::kBidiStreaming: return "MakeBidiStreamingHandler";
  }
  return "";
}

void WriteServiceDeclaration(Writer& w, const pb::ServiceDescriptor* service) {
  const std::string cls = ServiceClassName(service);
  const std::vector<std::string> names = MethodCppNames(service);
  const int n = service->method_count();

  w.Add(LeadingComment(service, ""));
  w.Add("class ", cls, " final {\n", " public:\n");
  w.Add("  // The name the service is registered and called under.\n");
  w.Add("  static constexpr char kServiceName[] = \"", CEscape(WireServiceName(service)),
        "\";\n\n");
  for (int i = 0; i < n; ++i) {
    w.Add("  static const ::locus::RpcMethod kMethod", names[i], ";\n");
  }
  w.Add("  // The method table, in declaration order.\n");
  w.Add("  static constexpr int kMethodCount = ", absl::StrCat(n), ";\n");
  if (n > 0) {
    w.Add("  static const ::locus::RpcMethod* const kMethods[kMethodCount];\n\n");
  } else {
    w.Add("  // No methods: holds a single nullptr.\n");
    w.Add("  static const ::locus::RpcMethod* const kMethods[1];\n\n");
  }

  // Service.
  w.Add("  // Server side: derive from Service and override the methods you implement;\n");
  w.Add("  // the others answer UNIMPLEMENTED.\n");
  w.Add("  class Service : public ::locus::Service {\n", "   public:\n");
  w.Add("    Service();\n", "    ~Service() override;\n");
  for (int i = 0; i < n; ++i) {
    const pb::MethodDescriptor* method = service->method(i);
    w.Add("\n", LeadingComment(method, "    "));
    w.Add("    virtual ::absl::Status ", names[i], "(::locus::ServerContext* context, ",
          HandlerParams(method, true), ");\n");
  }
  w.Add("  };\n\n");

  // StubInterface, Stub (stub_generator.h).
  WriteStubDeclarations(w, service);
  w.Add("};\n\n");
}

void WriteServiceDefinition(Writer& w, const pb::ServiceDescriptor* service) {
  const std::string cls = ServiceClassName(service);
  const std::vector<std::string> names = MethodCppNames(service);
  const int n = service->method_count();
  const std::string wire = WireServiceName(service);

  w.Add("// ", cls, "\n\n");
  w.Add(RetryPolicyDefinitions(service, names));
  for (int i = 0; i < n; ++i) {
    const pb::MethodDescriptor* method = service->method(i);
    const std::string retry = RetryPolicyConstant(method, names[i]);
    w.Add("const ::locus::RpcMethod ", cls, "::kMethod", names[i], " = {\"/",
          CEscape(wire), "/", CEscape(method->name()), "\", ", RpcKindName(KindOf(method)), ", ",
          method->options().GetExtension(::locus::oneway) ? "true" : "false",
          HasAttachments(method) ? ", true" : (retry.empty() ? "" : ", false"),
          retry.empty() ? "" : absl::StrCat(", &", retry), "};\n");
  }
  if (n > 0) {
    w.Add("const ::locus::RpcMethod* const ", cls, "::kMethods[", cls, "::kMethodCount] = {\n");
    for (int i = 0; i < n; ++i) w.Add("    &", cls, "::kMethod", names[i], ",\n");
    w.Add("};\n\n");
  } else {
    w.Add("const ::locus::RpcMethod* const ", cls, "::kMethods[1] = {nullptr};\n\n");
  }

  w.Add(cls, "::Service::Service() : ::locus::Service(", cls, "::kServiceName) {\n");
  for (int i = 0; i < n; ++i) {
    w.Add("  AddMethod(&", cls, "::kMethod", names[i], ", ::locus::internal::",
          HandlerFactory(KindOf(service->method(i))), "(this, &", cls, "::Service::", names[i],
          "));\n");
  }
  w.Add("}\n\n");
  w.Add(cls, "::Service::~Service() = default;\n\n");
  for (int i = 0; i < n; ++i) {
    const pb::MethodDescriptor* method = service->method(i);
    w.Add("::absl::Status ", cls, "::Service::", names[i], "(::locus::ServerContext* /*context*/, ",
          HandlerParams(method, false), ") {\n");
    w.Add("  return ::locus::internal::UnimplementedMethod(", cls, "::kMethod", names[i], ");\n");
    w.Add("}\n\n");
  }

  // Stub (stub_generator.h).
  WriteStubDefinitions(w, service);
}

// The generator's parameter (--locus_opt, or --locus_out=PARAMETER:DIR): ""
// or comma-separated options; the one there is, generate_mock_code=true|false,
// asks for <name>.locus_mock.h (stub_generator.h).
bool ParseParameter(const pb::FileDescriptor* file, const std::string& parameter,
                    bool* generate_mock_code, std::string* error) {
  for (absl::string_view option : absl::StrSplit(parameter, ',', absl::SkipEmpty())) {
    if (option == "generate_mock_code=true" || option == "generate_mock_code") {
      *generate_mock_code = true;
    } else if (option == "generate_mock_code=false") {
      *generate_mock_code = false;
    } else {
      *error = absl::StrCat(file->name(), ": unknown locus generator option \"", option,
                            "\" (known: generate_mock_code=true|false)");
      return false;
    }
  }
  return true;
}

bool NeedsTimeoutHelper(const pb::FileDescriptor* file) {
  for (int s = 0; s < file->service_count(); ++s) {
    for (int m = 0; m < file->service(s)->method_count(); ++m) {
      if (DefaultTimeoutMs(file->service(s)->method(m)) != 0) return true;
    }
  }
  return false;
}

std::string GenerateHeader(const pb::FileDescriptor* file, const std::string& base) {
  Writer w;
  WriteBanner(w, file);
  const std::string guard = HeaderGuard(base);
  w.Add("#ifndef ", guard, "\n#define ", guard, "\n\n");
  const RefAccessors refs = GenerateRefAccessors(file);
  w.Add("#include \"locus/codegen_support.h\"\n");
  for (const std::string& header : refs.includes) w.Add("#include \"", header, "\"\n");
  w.Add("#include \"", base, ".pb.h\"\n\n");
  if (file->service_count() > 0 || !refs.declarations.empty()) {
    OpenNamespaces(w, file);
    for (int i = 0; i < file->service_count(); ++i) WriteServiceDeclaration(w, file->service(i));
    w.Add(refs.declarations);
    CloseNamespaces(w, file);
    w.Add("\n");
  }
  w.Add("#endif  // ", guard, "\n");
  return w.str();
}

std::string GenerateSource(const pb::FileDescriptor* file, const std::string& base) {
  Writer w;
  WriteBanner(w, file);
  w.Add("#include \"", base, ".locus.h\"\n\n");
  if (file->service_count() > 0) {
    OpenNamespaces(w, file);
    if (NeedsTimeoutHelper(file)) {
      w.Add("namespace {\n\n",
            "// (locus.default_timeout_ms): calls that set no deadline get the method's\n",
            "// default one.\n",
            "const ::locus::CallOptions& LocusApplyDefaultTimeout(const ::locus::CallOptions& "
            "options,\n",
            "                                                     ::uint32_t timeout_ms,\n",
            "                                                     ::locus::CallOptions* storage) {\n",
            "  if (options.deadline != ::absl::InfiniteFuture()) return options;\n",
            "  *storage = options;\n",
            "  storage->deadline = ::absl::Now() + ::absl::Milliseconds(timeout_ms);\n",
            "  return *storage;\n", "}\n\n", "}  // namespace\n\n");
    }
    for (int i = 0; i < file->service_count(); ++i) WriteServiceDefinition(w, file->service(i));
    CloseNamespaces(w, file);
  }
  return w.str();
}

}  // namespace

bool IsCppKeyword(const std::string& name) {
  // C++20 keywords and alternative tokens (a superset of protoc's list), plus
  // NULL, which protoc also avoids.
  static const auto* keywords = new std::set<std::string>{
      "NULL",        "alignas",      "alignof",   "and",          "and_eq",
      "asm",         "auto",         "bitand",    "bitor",        "bool",
      "break",       "case",         "catch",     "char",         "char8_t",
      "char16_t",    "char32_t",     "class",     "compl",        "concept",
      "const",       "consteval",    "constexpr", "constinit",    "const_cast",
      "continue",    "co_await",     "co_return", "co_yield",     "decltype",
      "default",     "delete",       "do",        "double",       "dynamic_cast",
      "else",        "enum",         "explicit",  "export",       "extern",
      "false",       "float",        "for",       "friend",       "goto",
      "if",          "inline",       "int",       "long",         "mutable",
      "namespace",   "new",          "noexcept",  "not",          "not_eq",
      "nullptr",     "operator",     "or",        "or_eq",        "private",
      "protected",   "public",       "register",  "reinterpret_cast", "requires",
      "return",      "short",        "signed",    "sizeof",       "static",
      "static_assert", "static_cast", "struct",   "switch",       "template",
      "this",        "thread_local", "throw",     "true",         "try",
      "typedef",     "typeid",       "typename",  "union",        "unsigned",
      "using",       "virtual",      "void",      "volatile",     "wchar_t",
      "while",       "xor",          "xor_eq"};
  return keywords->count(name) > 0;
}

std::string ServiceClassName(const pb::ServiceDescriptor* service) {
  std::string name = service->name();
  if (IsCppKeyword(name)) name += "_";
  return name;
}

std::vector<std::string> MethodCppNames(const pb::ServiceDescriptor* service) {
  std::set<std::string> proto_names;
  for (int i = 0; i < service->method_count(); ++i) proto_names.insert(service->method(i)->name());
  std::set<std::string> used;
  std::vector<std::string> names;
  for (int i = 0; i < service->method_count(); ++i) {
    const std::string& proto_name = service->method(i)->name();
    std::string name = proto_name;
    bool mangle = IsCppKeyword(name) || ReservedMemberNames().count(name) > 0;
    // `AsyncFoo` next to `Foo`: the stub's async variants of Foo are named
    // AsyncFoo, so the method AsyncFoo becomes AsyncFoo_.
    if (absl::StartsWith(name, "Async") && proto_names.count(name.substr(5)) > 0) mangle = true;
    // The `_` suffix; for names already ending in `_`, a number instead.
    auto suffixed = [&](int n) { return MangledName(proto_name, n); };
    if (mangle) name = suffixed(1);
    // Still taken (by a generated member, an earlier method, or another
    // method's own name, e.g. `delete` next to `delete_`): number it. Never
    // append a second `_`: names with `__` are reserved in C++.
    auto taken = [&](const std::string& candidate) {
      return ReservedMemberNames().count(candidate) > 0 || used.count(candidate) > 0 ||
             (candidate != proto_name && proto_names.count(candidate) > 0);
    };
    for (int n = 2; taken(name); ++n) name = suffixed(n);
    used.insert(name);
    names.push_back(name);
  }
  return names;
}

std::string MangledName(const std::string& name, int n) {
  if (absl::EndsWith(name, "_")) return absl::StrCat(name, n);
  return n == 1 ? name + "_" : absl::StrCat(name, "_", n);
}

std::string QualifiedServiceClassName(const pb::ServiceDescriptor* service) {
  std::string name;
  for (const std::string& ns : Namespaces(service->file())) absl::StrAppend(&name, "::", ns);
  return absl::StrCat(name, "::", ServiceClassName(service));
}

std::string LocusHeaderName(const pb::FileDescriptor* file) {
  return StripProto(file->name()) + ".locus.h";
}

bool IsValidDottedIdentifier(absl::string_view name) {
  if (name.empty()) return false;
  for (absl::string_view part : absl::StrSplit(name, '.')) {
    if (part.empty()) return false;
    if (!absl::ascii_isalpha(part[0]) && part[0] != '_') return false;
    for (char c : part) {
      if (!absl::ascii_isalnum(c) && c != '_') return false;
    }
  }
  return true;
}

std::string CommentLines(const pb::SourceLocation& location, absl::string_view indent) {
  std::string text = location.leading_comments;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.empty()) return "";
  std::string out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.remove_suffix(1);
    if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    absl::StrAppend(&out, indent, line.empty() ? "//" : "// ", line, "\n");
  }
  return out;
}

std::string SourcePosition(const pb::FileDescriptor* file, std::vector<int> path) {
  pb::SourceLocation location;
  while (!path.empty()) {
    if (file->GetSourceLocation(path, &location)) {
      return absl::StrCat(file->name(), ":", location.start_line + 1, ":",
                          location.start_column + 1);
    }
    path.pop_back();
  }
  return file->name();
}

void LocusGenerator::Validate(const pb::FileDescriptor* file, std::vector<std::string>* errors) {
  if (file->service_count() > 0 && file->options().cc_generic_services()) {
    errors->push_back(absl::StrCat(
        SourcePosition(file, {kFileOptionsField, kFileOptionsCcGenericServices}),
        ": option cc_generic_services conflicts with the service classes Locus generates; "
        "remove it"));
  }
  for (int s = 0; s < file->service_count(); ++s) {
    const pb::ServiceDescriptor* service = file->service(s);
    if (service->options().HasExtension(::locus::wire_name)) {
      const std::string& wire_name = service->options().GetExtension(::locus::wire_name);
      if (!IsValidDottedIdentifier(wire_name)) {
        std::vector<int> path = ServicePath(service);
        path.insert(path.end(), {kServiceOptionsField, kWireNameField});
        errors->push_back(absl::StrCat(SourcePosition(file, path), ": service ",
                                       service->full_name(), ": (locus.wire_name) \"", wire_name,
                                       "\" is not a valid dotted identifier (like "
                                       "\"pkg.Service\")"));
      }
    }
    // The gmock stub (generate_mock_code) is Mock<Service>Stub next to the
    // service's class: a symbol of that name in the package would clash.
    const std::string mock_name = absl::StrCat("Mock", service->name(), "Stub");
    const std::string mock_full_name =
        file->package().empty() ? mock_name : absl::StrCat(file->package(), ".", mock_name);
    const pb::DescriptorPool* pool = file->pool();
    if (pool->FindMessageTypeByName(mock_full_name) != nullptr ||
        pool->FindEnumTypeByName(mock_full_name) != nullptr ||
        pool->FindServiceByName(mock_full_name) != nullptr) {
      errors->push_back(absl::StrCat(SourcePosition(file, ServicePath(service)), ": service ",
                                     service->full_name(), ": the name ", mock_full_name,
                                     " is taken by the generated gmock stub; rename one of them"));
    }
    for (int m = 0; m < service->method_count(); ++m) {
      const pb::MethodDescriptor* method = service->method(m);
      std::vector<int> path = MethodPath(method);
      const bool streaming = method->client_streaming() || method->server_streaming();
      if (method->options().GetExtension(::locus::oneway)) {
        std::vector<int> at = path;
        at.insert(at.end(), {kMethodOptionsField, kOnewayField});
        if (streaming) {
          errors->push_back(absl::StrCat(SourcePosition(file, at), ": method ",
                                         method->full_name(),
                                         ": (locus.oneway) is only valid on unary methods"));
        } else if (method->output_type()->full_name() != "google.protobuf.Empty") {
          errors->push_back(absl::StrCat(
              SourcePosition(file, at), ": method ", method->full_name(),
              ": (locus.oneway) requires the response type google.protobuf.Empty, not ",
              method->output_type()->full_name()));
        }
      }
    }
  }
  ValidateObjectRefs(file, errors);
  ValidateRetryPolicies(file, errors);
}

bool LocusGenerator::Generate(const pb::FileDescriptor* file, const std::string& parameter,
                              pb::compiler::GeneratorContext* context,
                              std::string* error) const {
  bool generate_mock_code = false;
  if (!ParseParameter(file, parameter, &generate_mock_code, error)) return false;
  std::vector<std::string> errors;
  Validate(file, &errors);
  if (!errors.empty()) {
    *error = absl::StrJoin(errors, "\n");
    return false;
  }
  const std::string base = StripProto(file->name());
  WriteFile(context, base + ".locus.h", GenerateHeader(file, base));
  WriteFile(context, base + ".locus.cc", GenerateSource(file, base));
  if (generate_mock_code) WriteFile(context, base + ".locus_mock.h", GenerateMockHeader(file, base));
  return true;
}

bool LocusGenerator::GenerateAll(const std::vector<const pb::FileDescriptor*>& files,
                                 const std::string& parameter,
                                 pb::compiler::GeneratorContext* context,
                                 std::string* error) const {
  std::vector<std::string> errors;
  for (const pb::FileDescriptor* file : files) Validate(file, &errors);
  if (!errors.empty()) {
    *error = absl::StrJoin(errors, "\n");
    return false;
  }
  for (const pb::FileDescriptor* file : files) {
    if (!Generate(file, parameter, context, error)) return false;
  }
  return true;
}

}  // namespace codegen
}  // namespace locus
