// The methods a server (or, for callbacks, a client) can be called on, by
// wire name ("/pkg.Service/Method").
//
// Example:
//   ServiceTable table;
//   absl::Status added = table.Add(&my_service);  // ALREADY_EXISTS for a second "pkg.Echo"
//   const ServiceTable::Entry* entry = table.Find("/pkg.Echo/Say");
//
// Thread-safety: Add() before sharing; Find() is then safe from any thread.
#ifndef LOCUS_RUNTIME_INTERNAL_SERVICE_TABLE_H_
#define LOCUS_RUNTIME_INTERNAL_SERVICE_TABLE_H_

#include <atomic>
#include <cstdint>
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

  ServiceTable() = default;
  ServiceTable(const ServiceTable&) = delete;
  ServiceTable& operator=(const ServiceTable&) = delete;

  absl::Status Add(Service* service) {
    id_ = NextId();  // entries may move: forget what Find remembered
    if (!service_names_.insert(service->name()).second) {
      return absl::AlreadyExistsError(
          absl::StrCat("a service named ", service->name(), " is already registered"));
    }
    for (const Service::Method& m : service->methods()) {
      methods_[m.method->full_name] = Entry{m.method, m.handler.get()};
    }
    return absl::OkStatus();
  }

  // Remembers, per thread, the last method found: a connection serving
  // call after call of one method compares one string instead of hashing
  // it. Entries never move once the table is shared, and table ids are
  // never reused (Add takes a new one), so a remembered entry of a
  // destroyed or since-changed table is never returned.
  const Entry* Find(absl::string_view full_name) const {
    thread_local LastFound last;
    if (last.table_id == id_ && last.full_name == full_name) return last.entry;
    // Looked up by the copy it remembers: `full_name` is read once.
    last.table_id = 0;
    last.full_name.assign(full_name.data(), full_name.size());
    auto it = methods_.find(last.full_name);
    if (it == methods_.end()) return nullptr;
    last.table_id = id_;
    last.entry = &it->second;
    return last.entry;
  }

 private:
  struct LastFound {
    uint64_t table_id = 0;
    std::string full_name;
    const Entry* entry = nullptr;
  };
  static uint64_t NextId() {
    static std::atomic<uint64_t> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);
  }

  uint64_t id_ = NextId();
  absl::flat_hash_set<std::string> service_names_;
  absl::flat_hash_map<std::string, Entry> methods_;
};

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_SERVICE_TABLE_H_
