#include "codegen/object_refs.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "codegen/locus_generator.h"
#include "google/protobuf/compiler/cpp/names.h"
#include "google/protobuf/descriptor.h"
#include "locus/options.pb.h"

namespace locus {
namespace codegen {

namespace pb = ::google::protobuf;

namespace {

constexpr char kObjectRef[] = "locus.ObjectRef";
constexpr char kFileDescriptor[] = "locus.FileDescriptor";

// FileDescriptorProto / DescriptorProto / FieldDescriptorProto field
// numbers, for SourceLocation paths.
constexpr int kFileMessageField = 4;
constexpr int kFileExtensionField = 7;
constexpr int kMessageFieldField = 2;
constexpr int kMessageNestedField = 3;
constexpr int kMessageExtensionField = 6;
constexpr int kFieldOptionsField = 8;
constexpr int kInterfaceField = 51820;

std::vector<int> MessagePath(const pb::Descriptor* message) {
  if (message->containing_type() == nullptr) return {kFileMessageField, message->index()};
  std::vector<int> path = MessagePath(message->containing_type());
  path.insert(path.end(), {kMessageNestedField, message->index()});
  return path;
}

std::vector<int> InterfaceOptionPath(const pb::FieldDescriptor* field) {
  std::vector<int> path;
  if (!field->is_extension()) {
    path = MessagePath(field->containing_type());
    path.insert(path.end(), {kMessageFieldField, field->index()});
  } else if (field->extension_scope() != nullptr) {
    path = MessagePath(field->extension_scope());
    path.insert(path.end(), {kMessageExtensionField, field->index()});
  } else {
    path = {kFileExtensionField, field->index()};
  }
  path.insert(path.end(), {kFieldOptionsField, kInterfaceField});
  return path;
}

bool IsObjectRef(const pb::FieldDescriptor* field) {
  return field->message_type() != nullptr && field->message_type()->full_name() == kObjectRef;
}

// The field's type as written in the .proto (without `repeated`).
std::string TypeName(const pb::FieldDescriptor* field) {
  if (field->is_map()) {
    const pb::Descriptor* entry = field->message_type();
    return absl::StrCat("map<", TypeName(entry->map_key()), ", ", TypeName(entry->map_value()),
                        ">");
  }
  if (field->message_type() != nullptr) return field->message_type()->full_name();
  if (field->enum_type() != nullptr) return field->enum_type()->full_name();
  return field->type_name();
}

void CollectFiles(const pb::FileDescriptor* file, std::set<const pb::FileDescriptor*>* files) {
  if (!files->insert(file).second) return;
  for (int i = 0; i < file->dependency_count(); ++i) CollectFiles(file->dependency(i), files);
}

// The service `name` (a full name) if `file` or a file it imports defines it.
const pb::ServiceDescriptor* FindVisibleService(const pb::FileDescriptor* file,
                                                const std::string& name) {
  const pb::ServiceDescriptor* service = file->pool()->FindServiceByName(name);
  if (service == nullptr) return nullptr;
  std::set<const pb::FileDescriptor*> visible;
  CollectFiles(file, &visible);
  return visible.count(service->file()) > 0 ? service : nullptr;
}

// Calls `fn` on every field (and extension) declared in `message` and the
// messages nested in it.
template <typename Fn>
void ForEachField(const pb::Descriptor* message, const Fn& fn) {
  for (int i = 0; i < message->field_count(); ++i) fn(message->field(i));
  for (int i = 0; i < message->extension_count(); ++i) fn(message->extension(i));
  for (int i = 0; i < message->nested_type_count(); ++i) ForEachField(message->nested_type(i), fn);
}

template <typename Fn>
void ForEachField(const pb::FileDescriptor* file, const Fn& fn) {
  for (int i = 0; i < file->extension_count(); ++i) fn(file->extension(i));
  for (int i = 0; i < file->message_type_count(); ++i) ForEachField(file->message_type(i), fn);
}

void ValidateField(const pb::FieldDescriptor* field, std::vector<std::string>* errors) {
  if (!field->options().HasExtension(::locus::interface)) return;
  const pb::FileDescriptor* file = field->file();
  const std::string& name = field->options().GetExtension(::locus::interface);
  const std::string where =
      absl::StrCat(SourcePosition(file, InterfaceOptionPath(field)), ": field ",
                   field->full_name(), ": (locus.interface) ");
  if (!IsObjectRef(field)) {
    errors->push_back(absl::StrCat(where, "is only valid on ", kObjectRef, " fields, not ",
                                   TypeName(field)));
    return;
  }
  if (!IsValidDottedIdentifier(name)) {
    errors->push_back(absl::StrCat(where, "\"", name,
                                   "\" is not a valid service name (a full name like "
                                   "\"pkg.Service\")"));
    return;
  }
  if (FindVisibleService(file, name) != nullptr) return;
  // A name relative to the field's package, as proto type names may be.
  std::string hint;
  std::vector<std::string> scope = absl::StrSplit(file->package(), '.', absl::SkipEmpty());
  for (; !scope.empty(); scope.pop_back()) {
    const std::string full = absl::StrCat(absl::StrJoin(scope, "."), ".", name);
    if (FindVisibleService(file, full) != nullptr) {
      hint = absl::StrCat(" (did you mean \"", full, "\"? it takes full names)");
      break;
    }
  }
  errors->push_back(absl::StrCat(where, "\"", name, "\" is not a service defined in ",
                                 file->name(), " or in a file it imports", hint));
}

bool HoldsAttachments(const pb::Descriptor* type, std::set<const pb::Descriptor*>* seen) {
  if (type->full_name() == kObjectRef || type->full_name() == kFileDescriptor) return true;
  // Already seen: either fully searched without success or on the path
  // being searched (a recursive type), whose other fields are searched there.
  if (!seen->insert(type).second) return false;
  for (int i = 0; i < type->field_count(); ++i) {
    const pb::Descriptor* field_type = type->field(i)->message_type();
    if (field_type != nullptr && HoldsAttachments(field_type, seen)) return true;
  }
  return false;
}

// The (locus.interface) fields of `message` itself (not of nested messages).
std::vector<const pb::FieldDescriptor*> TypedRefFields(const pb::Descriptor* message) {
  std::vector<const pb::FieldDescriptor*> fields;
  for (int i = 0; i < message->field_count(); ++i) {
    if (message->field(i)->options().HasExtension(::locus::interface)) {
      fields.push_back(message->field(i));
    }
  }
  return fields;
}

void CollectMessages(const pb::Descriptor* message, std::vector<const pb::Descriptor*>* out) {
  out->push_back(message);
  for (int i = 0; i < message->nested_type_count(); ++i) {
    CollectMessages(message->nested_type(i), out);
  }
}

// Every message of `file`, in declaration order, nested ones after their
// parent.
std::vector<const pb::Descriptor*> AllMessages(const pb::FileDescriptor* file) {
  std::vector<const pb::Descriptor*> messages;
  for (int i = 0; i < file->message_type_count(); ++i) {
    CollectMessages(file->message_type(i), &messages);
  }
  return messages;
}

// The C++ class names protoc and locusc declare in the namespace of `file`'s
// package, as far as `file` and its imports show them.
std::set<std::string> NamespaceClassNames(const pb::FileDescriptor* file) {
  std::set<const pb::FileDescriptor*> files;
  CollectFiles(file, &files);
  std::set<std::string> names;
  for (const pb::FileDescriptor* other : files) {
    if (other->package() != file->package()) continue;
    for (const pb::Descriptor* message : AllMessages(other)) {
      names.insert(pb::compiler::cpp::ClassName(message));
      for (int i = 0; i < message->enum_type_count(); ++i) {
        names.insert(pb::compiler::cpp::ClassName(message->enum_type(i)));
      }
    }
    for (int i = 0; i < other->enum_type_count(); ++i) {
      names.insert(pb::compiler::cpp::ClassName(other->enum_type(i)));
    }
    for (int i = 0; i < other->service_count(); ++i) {
      names.insert(ServiceClassName(other->service(i)));
    }
  }
  return names;
}

void WriteAccessors(const pb::FieldDescriptor* field, const std::string& message_type,
                    std::string* out) {
  const pb::ServiceDescriptor* service =
      FindVisibleService(field->file(), field->options().GetExtension(::locus::interface));
  const std::string remote =
      absl::StrCat("::locus::Remote<", QualifiedServiceClassName(service), ">");
  const std::string name = pb::compiler::cpp::FieldName(field);
  pb::SourceLocation location;
  const std::string comment =
      field->GetSourceLocation(&location) ? CommentLines(location, "  ") : "";
  const std::string setter_params =
      absl::StrCat("(", message_type, "* message, ::std::shared_ptr<",
                   QualifiedServiceClassName(service),
                   "::Service> object, ::locus::ExportOptions options = {})");
  if (field->is_repeated()) {
    absl::StrAppend(
        out, "\n", comment, "  // ", field->name(), ": references to ", service->full_name(),
        ".\n",
        "  [[nodiscard]] static ::absl::StatusOr<", remote, "> ", name, "(const ", message_type,
        "& message, int index, const ::locus::ChannelOptions& options = {}) {\n",
        "    if (index < 0 || index >= message.", name, "_size()) {\n",
        "      return ::absl::OutOfRangeError(\"", field->full_name(), ": no such index\");\n",
        "    }\n",
        "    return ", remote, "::From(message.", name, "(index), options);\n", "  }\n",
        "  // On error the message is unchanged.\n",
        "  [[nodiscard]] static ::absl::Status add_", name, setter_params, " {\n",
        "    ::absl::Status status = ::locus::SetRef(message->add_", name,
        "(), ::std::move(object), ::std::move(options));\n",
        "    if (!status.ok()) message->mutable_", name, "()->RemoveLast();\n",
        "    return status;\n", "  }\n");
    return;
  }
  absl::StrAppend(
      out, "\n", comment, "  // ", field->name(), ": a reference to ", service->full_name(),
      ".\n",
      "  [[nodiscard]] static ::absl::StatusOr<", remote, "> ", name, "(const ", message_type,
      "& message, const ::locus::ChannelOptions& options = {}) {\n",
      "    if (!message.has_", name, "()) {\n",
      "      return ::absl::NotFoundError(\"", field->full_name(), " is not set\");\n",
      "    }\n",
      "    return ", remote, "::From(message.", name, "(), options);\n", "  }\n",
      "  [[nodiscard]] static ::absl::Status set_", name, setter_params, " {\n",
      "    return ::locus::SetRef(message->mutable_", name,
      "(), ::std::move(object), ::std::move(options));\n", "  }\n");
}

}  // namespace

void ValidateObjectRefs(const pb::FileDescriptor* file, std::vector<std::string>* errors) {
  ForEachField(file, [errors](const pb::FieldDescriptor* field) { ValidateField(field, errors); });
}

bool HasAttachments(const pb::MethodDescriptor* method) {
  std::set<const pb::Descriptor*> seen;
  return HoldsAttachments(method->input_type(), &seen) ||
         HoldsAttachments(method->output_type(), &seen);
}

RefAccessors GenerateRefAccessors(const pb::FileDescriptor* file) {
  RefAccessors result;
  std::set<std::string> taken = NamespaceClassNames(file);
  std::set<std::string> headers;
  for (const pb::Descriptor* message : AllMessages(file)) {
    const std::vector<const pb::FieldDescriptor*> fields = TypedRefFields(message);
    if (fields.empty()) continue;
    const std::string base = pb::compiler::cpp::ClassName(message) + "Refs";
    std::string name = base;
    for (int n = 1; taken.count(name) > 0; ++n) name = MangledName(base, n);
    taken.insert(name);

    const std::string message_type = pb::compiler::cpp::QualifiedClassName(message);
    absl::StrAppend(&result.declarations, "// Typed access to the object references in ",
                    message->full_name(), " ((locus.interface) fields).\n", "struct ", name,
                    " final {");
    for (const pb::FieldDescriptor* field : fields) {
      WriteAccessors(field, message_type, &result.declarations);
      const pb::ServiceDescriptor* service =
          FindVisibleService(file, field->options().GetExtension(::locus::interface));
      if (service->file() != file) headers.insert(LocusHeaderName(service->file()));
    }
    absl::StrAppend(&result.declarations, "};\n\n");
  }
  if (!result.declarations.empty()) {
    result.includes.push_back("locus/object.h");
    result.includes.insert(result.includes.end(), headers.begin(), headers.end());
  }
  return result;
}

}  // namespace codegen
}  // namespace locus
