// The generator's side of (locus.retry) (idl/locus/options.proto): its
// checks, and the locus::RetryPolicy constants that generated method
// tables point at (RpcMethod::retry_policy). See codegen/README.md.
#ifndef LOCUS_CODEGEN_RETRY_POLICY_H_
#define LOCUS_CODEGEN_RETRY_POLICY_H_

#include <string>
#include <vector>

#include "google/protobuf/descriptor.h"

namespace locus {
namespace codegen {

// Appends one "file.proto:LINE:COL: message" per invalid (locus.retry) in
// `file`: a field missing or out of range, an unknown status code name,
// or the option on a oneway method.
void ValidateRetryPolicies(const google::protobuf::FileDescriptor* file,
                           std::vector<std::string>* errors);

// The name of the constant holding `method`'s policy ("" if it has none);
// `cpp_name` is the method's C++ name in its service class.
std::string RetryPolicyConstant(const google::protobuf::MethodDescriptor* method,
                                const std::string& cpp_name);

// C++ for the .locus.cc, in the service's namespace, before its method
// table: a constexpr locus::RetryPolicy per method that has (locus.retry)
// (valid: see ValidateRetryPolicies), in an anonymous namespace; "" if none.
std::string RetryPolicyDefinitions(const google::protobuf::ServiceDescriptor* service,
                                   const std::vector<std::string>& cpp_names);

}  // namespace codegen
}  // namespace locus

#endif  // LOCUS_CODEGEN_RETRY_POLICY_H_
