// The methods a server (or, for callbacks, a client) can be called on, by
// wire name ("/pkg.Service/Method").
//
// Example:
//   ServiceTable table;
//   LOCUS_RETURN_IF_ERROR(table.Add(&my_service));
//   const ServiceTable::Entry* entry = table.Find("/pkg.Echo/Say");
//
// Thread-safety: Add() before sharing; Find() is then safe from any thread.
#ifndef LOCUS_RUNTIME_INTERNAL_SERVICE_TABLE_H_
#define LOCUS_RUNTIME_INTERNAL_SERVICE_TABLE_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "locus/service.h"

namespace locus::internal {

class ServiceTable {
 public:
  struct Entry {
    const RpcMethod* method;
    MethodHandler* handler;
  };

  absl::Status Add(Service* service) {
    if (!service_names_.insert(service->name()).second) {
      return absl::AlreadyExistsError(
          absl::StrCat("a service named ", service->name(), " is already registered"));
    }
    for (const Service::Method& m : service->methods()) {
      methods_[m.method->full_name] = Entry{m.method, m.handler.get()};
    }
    return absl::OkStatus();
  }

  const Entry* Find(absl::string_view full_name) const {
    auto it = methods_.find(full_name);
    return it == methods_.end() ? nullptr : &it->second;
  }

 private:
  absl::flat_hash_set<std::string> service_names_;
  absl::flat_hash_map<std::string, Entry> methods_;
};

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_SERVICE_TABLE_H_
