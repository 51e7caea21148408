// The generator's side of remote object references (locus/rmi.proto): the
// checks of (locus.interface), RpcMethod::has_attachments and the typed
// accessors of reference fields. See codegen/README.md, "Object references".
#ifndef LOCUS_CODEGEN_OBJECT_REFS_H_
#define LOCUS_CODEGEN_OBJECT_REFS_H_

#include <string>
#include <vector>

#include "google/protobuf/descriptor.h"

namespace locus {
namespace codegen {

// Appends one "file.proto:LINE:COL: message" per misuse of (locus.interface)
// in `file`: on a field that is not a locus.ObjectRef, or naming anything but
// a service of `file` or of the files it imports (transitively), spelled
// "pkg.Service".
void ValidateObjectRefs(const google::protobuf::FileDescriptor* file,
                        std::vector<std::string>* errors);

// True if the request or the response type of `method` holds a
// locus.ObjectRef or locus.FileDescriptor field at any depth (nested
// messages, repeated fields, map values, oneofs). Extensions and
// google.protobuf.Any contents are not looked into.
bool HasAttachments(const google::protobuf::MethodDescriptor* method);

// The typed accessors of the messages of `file` (valid: see
// ValidateObjectRefs), one struct per message with (locus.interface) fields.
struct RefAccessors {
  // What the .locus.h must include for them; empty if there are none.
  std::vector<std::string> includes;
  // C++ for the file's namespace, after the service classes.
  std::string declarations;
};
RefAccessors GenerateRefAccessors(const google::protobuf::FileDescriptor* file);

}  // namespace codegen
}  // namespace locus

#endif  // LOCUS_CODEGEN_OBJECT_REFS_H_
