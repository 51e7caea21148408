#include "codegen/stub_generator.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codegen/locus_generator.h"
#include "google/protobuf/descriptor.h"

namespace locus {
namespace codegen {

namespace pb = ::google::protobuf;

namespace {

constexpr char kOptionsType[] = "const ::locus::CallOptions&";
constexpr char kDoneType[] = "::absl::AnyInvocable<void(::absl::Status) &&>";

// How an overload of a unary method returns its result; streaming methods
// have one overload, returning the stream.
enum class Form { kReply, kInto, kFuture, kCallback, kStream };

struct Param {
  std::string type;
  std::string name;
};

// One overload of a stub method, as StubInterface, Stub and the mock declare
// it.
struct StubMethod {
  Form form;
  std::string return_type;
  std::string name;
  std::vector<Param> params;
  // Ignoring the result is a bug: a status, a reply or an open stream.
  bool nodiscard;
  // A comment line of its own before the declaration ("" for none).
  std::string note;
};

std::string StreamType(const pb::MethodDescriptor* method) {
  const std::string req = MessageType(method->input_type());
  const std::string resp = MessageType(method->output_type());
  switch (KindOf(method)) {
    case Kind::kClientStreaming:
      return absl::StrCat("::locus::ClientWriter<", req, ">");
    case Kind::kServerStreaming:
      return absl::StrCat("::locus::ClientReader<", resp, ">");
    case Kind::kBidiStreaming:
      return absl::StrCat("::locus::ClientReaderWriter<", req, ", ", resp, ">");
    case Kind::kUnary:
      break;
  }
  return "";
}

// The overloads of `method` (C++ name `name`), in declaration order.
std::vector<StubMethod> StubMethods(const pb::MethodDescriptor* method, const std::string& name) {
  const std::string resp = MessageType(method->output_type());
  const Param request{absl::StrCat("const ", MessageType(method->input_type()), "&"), "request"};
  const Param response{absl::StrCat("::locus::Out<", resp, ">"), "response"};
  const Param options{kOptionsType, "options"};
  const Param done{kDoneType, "done"};
  const std::string async_name = absl::StrCat("Async", name);
  switch (KindOf(method)) {
    case Kind::kUnary:
      return {
          {Form::kReply,
           absl::StrCat("::absl::StatusOr<", resp, ">"),
           name,
           {request, options},
           true,
           ""},
          {Form::kInto, "::absl::Status", name, {request, response, options}, true, ""},
          {Form::kFuture,
           absl::StrCat("::locus::Future<", resp, ">"),
           async_name,
           {request, options},
           false,
           ""},
          {Form::kCallback,
           "void",
           async_name,
           {request, response, options, done},
           false,
           "`response` must stay valid until `done` runs."},
      };
    case Kind::kServerStreaming:
      return {{Form::kStream, StreamType(method), name, {request, options}, true, ""}};
    case Kind::kClientStreaming:
      return {{Form::kStream,
               StreamType(method),
               name,
               {response, options},
               true,
               "`response` is written before Finish() returns OK; it must stay valid until then."}};
    case Kind::kBidiStreaming:
      return {{Form::kStream, StreamType(method), name, {options}, true, ""}};
  }
  return {};
}

// "T1 n1, T2 n2 = {}": the call's options default to `{}` when they come
// last (in declarations only).
std::string Params(const StubMethod& m, bool with_default) {
  std::vector<std::string> params;
  for (const Param& param : m.params) params.push_back(absl::StrCat(param.type, " ", param.name));
  if (with_default && m.params.back().type == kOptionsType) params.back() += " = {}";
  return absl::StrJoin(params, ", ");
}

// A type as one MOCK_METHOD argument: parenthesized if it holds a comma.
std::string MockType(const std::string& type) {
  return absl::StrContains(type, ',') ? absl::StrCat("(", type, ")") : type;
}

// The declarations of one service method's overloads in StubInterface
// (`prefix` "virtual ", `suffix` " = 0") or Stub ("", " override").
void WriteMethodDeclarations(Writer& w, const pb::MethodDescriptor* method, const std::string& name,
                             absl::string_view prefix, absl::string_view suffix) {
  w.Add("\n", LeadingComment(method, "    "));
  for (const StubMethod& m : StubMethods(method, name)) {
    if (!m.note.empty()) w.Add("    // ", m.note, "\n");
    w.Add("    ", m.nodiscard ? "[[nodiscard]] " : "", prefix, m.return_type, " ", m.name, "(",
          Params(m, true), ")", suffix, ";\n");
  }
}

// The options a stub method passes on: `options` itself, or, for a method
// with (locus.default_timeout_ms), a copy with the default deadline applied.
std::string OptionsExpr(const pb::MethodDescriptor* method) {
  uint32_t timeout_ms = DefaultTimeoutMs(method);
  if (timeout_ms == 0) return "options";
  return absl::StrCat("LocusApplyDefaultTimeout(options, ", timeout_ms, ", &with_default_timeout)");
}

std::string OptionsPrelude(const pb::MethodDescriptor* method) {
  if (DefaultTimeoutMs(method) == 0) return "";
  return "  ::locus::CallOptions with_default_timeout;\n";
}

// The statement that makes the call of overload `m` of `method`, whose
// RpcMethod is `rpc`.
std::string CallStatement(const pb::MethodDescriptor* method, const StubMethod& m,
                          const std::string& rpc) {
  const std::string resp = MessageType(method->output_type());
  const std::string opts = OptionsExpr(method);
  switch (m.form) {
    case Form::kReply:
      return absl::StrCat("  return ::locus::internal::BlockingUnaryCall<", resp, ">(*channel_, ",
                          rpc, ", request, ", opts, ");\n");
    case Form::kInto:
      return absl::StrCat("  return ::locus::internal::UnaryCallInto(*channel_, ", rpc,
                          ", request, response.get(), ", opts, ");\n");
    case Form::kFuture:
      return absl::StrCat("  return ::locus::internal::FutureUnaryCall<", resp, ">(*channel_, ",
                          rpc, ", request, ", opts, ");\n");
    case Form::kCallback:
      return absl::StrCat("  ::locus::internal::StartUnaryInto(*channel_, ", rpc,
                          ", request, response.get(), ", opts, ", ::std::move(done));\n");
    case Form::kStream:
      break;
  }
  switch (KindOf(method)) {
    case Kind::kServerStreaming:
      return absl::StrCat("  return ", m.return_type, "(channel_->OpenStream(", rpc,
                          ", &request, nullptr, ", opts, "));\n");
    case Kind::kClientStreaming:
      return absl::StrCat("  return ", m.return_type,
                          "(::locus::internal::OpenClientStreamInto(*channel_, ", rpc,
                          ", response.get(), ", opts, "));\n");
    case Kind::kBidiStreaming:
      return absl::StrCat("  return ", m.return_type, "(channel_->OpenStream(", rpc,
                          ", nullptr, nullptr, ", opts, "));\n");
    case Kind::kUnary:
      break;
  }
  return "";
}

std::string MockGuard(const std::string& base) {
  std::string guard = "LOCUS_GENERATED_";
  for (char c : base) guard += absl::ascii_isalnum(c) ? absl::ascii_toupper(c) : '_';
  return guard + "_LOCUS_MOCK_H_";
}

}  // namespace

void WriteStubDeclarations(Writer& w, const pb::ServiceDescriptor* service) {
  const std::string cls = ServiceClassName(service);
  const std::vector<std::string> names = MethodCppNames(service);
  const int n = service->method_count();

  w.Add("  // Client side, as an interface: Stub implements it over a channel, and\n", "  // Mock",
        cls, "Stub (generate_mock_code=true) with gmock. Code written\n",
        "  // against it can be tested without a server.\n");
  w.Add("  class StubInterface {\n", "   public:\n", "    virtual ~StubInterface() = default;\n");
  for (int i = 0; i < n; ++i) {
    WriteMethodDeclarations(w, service->method(i), names[i], "virtual ", " = 0");
  }
  w.Add("  };\n\n");

  w.Add("  // Client side. Thread-safe; cheap to create. A final class: calls on a\n",
        "  // Stub are direct calls, not virtual ones.\n");
  w.Add("  class Stub final : public StubInterface {\n", "   public:\n");
  w.Add("    explicit Stub(::std::shared_ptr<::locus::Channel> channel);\n");
  for (int i = 0; i < n; ++i) {
    WriteMethodDeclarations(w, service->method(i), names[i], "", " override");
  }
  w.Add(
      "\n    const ::std::shared_ptr<::locus::Channel>& channel() const { return channel_; }\n\n");
  w.Add("   private:\n", "    ::std::shared_ptr<::locus::Channel> channel_;\n", "  };\n\n");
  w.Add("  static ::std::unique_ptr<Stub> NewStub(::std::shared_ptr<::locus::Channel> channel);\n");
}

void WriteStubDefinitions(Writer& w, const pb::ServiceDescriptor* service) {
  const std::string cls = ServiceClassName(service);
  const std::vector<std::string> names = MethodCppNames(service);
  const int n = service->method_count();

  w.Add(cls, "::Stub::Stub(::std::shared_ptr<::locus::Channel> channel)\n",
        "    : channel_(::std::move(channel)) {}\n\n");
  for (int i = 0; i < n; ++i) {
    const pb::MethodDescriptor* method = service->method(i);
    const std::string rpc = absl::StrCat(cls, "::kMethod", names[i]);
    for (const StubMethod& m : StubMethods(method, names[i])) {
      w.Add(m.return_type, " ", cls, "::Stub::", m.name, "(", Params(m, false), ") {\n",
            OptionsPrelude(method), CallStatement(method, m, rpc), "}\n\n");
    }
  }
  w.Add("::std::unique_ptr<", cls, "::Stub> ", cls,
        "::NewStub(::std::shared_ptr<::locus::Channel> channel) {\n",
        "  return ::std::make_unique<", cls, "::Stub>(::std::move(channel));\n}\n\n");
}

std::string GenerateMockHeader(const pb::FileDescriptor* file, const std::string& base) {
  Writer w;
  WriteBanner(w, file);
  const std::string guard = MockGuard(base);
  w.Add("#ifndef ", guard, "\n#define ", guard, "\n\n");
  w.Add("#include \"gmock/gmock.h\"\n");
  w.Add("#include \"", base, ".locus.h\"\n\n");
  if (file->service_count() > 0) {
    OpenNamespaces(w, file);
    for (int s = 0; s < file->service_count(); ++s) {
      const pb::ServiceDescriptor* service = file->service(s);
      const std::string cls = ServiceClassName(service);
      const std::vector<std::string> names = MethodCppNames(service);
      w.Add("// A gmock mock of ", cls, "::StubInterface, for tests of code written against\n",
            "// it. Calls with default options go through a StubInterface& (the defaults\n",
            "// are the interface's).\n");
      w.Add("class Mock", cls, "Stub : public ", cls, "::StubInterface {\n", " public:\n");
      for (int i = 0; i < service->method_count(); ++i) {
        for (const StubMethod& m : StubMethods(service->method(i), names[i])) {
          std::vector<std::string> types;
          for (const Param& param : m.params) types.push_back(MockType(param.type));
          w.Add("  MOCK_METHOD(", MockType(m.return_type), ", ", m.name, ", (",
                absl::StrJoin(types, ", "), "), (override));\n");
        }
      }
      w.Add("};\n\n");
    }
    CloseNamespaces(w, file);
    w.Add("\n");
  }
  w.Add("#endif  // ", guard, "\n");
  return w.str();
}

}  // namespace codegen
}  // namespace locus
