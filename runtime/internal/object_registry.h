// The objects this process exports (locus/object.h): the owner's side of
// every reference. One registry per process; every connection into the
// process serves calls on its objects, given the object's id and token.
//
// Example:
//   ObjectRegistry& registry = ObjectRegistry::Get();
//   auto entry = registry.Export(service, {}, ObjectRegistry::Hold::kUnsent);
//   registry.FillRef(**entry, &ref);                 // what peers receive
//   registry.AddHolder((*entry)->id(), connection_serial, 1);   // ref sent
//   std::shared_ptr<ExportEntry> found = registry.Find(id, token);  // a call
//
// Lifetime of an export: it stays while the owner holds an Exported handle,
// a connection holds references (counted per connection serial: sent minus
// released), an in-process Remote holds it, or its grace or lease time runs;
// then it is unexported (the id answers NOT_FOUND from then on), its
// on_unreferenced runs on the object pool and the registry drops the
// object. Revoke unexports at once.
//
// Thread-safety: all methods are thread-safe. User callbacks
// (on_unreferenced, on_holder_gone) run on ObjectPool(), never under the
// registry's lock nor on the timer thread.
#ifndef LOCUS_RUNTIME_INTERNAL_OBJECT_REGISTRY_H_
#define LOCUS_RUNTIME_INTERNAL_OBJECT_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "internal/service_table.h"
#include "internal/thread_pool.h"
#include "locus/object.h"
#include "locus/rmi.pb.h"

namespace locus::internal {

// Runs handlers of calls on exported objects and of callbacks, and the
// registry's user callbacks: elastic, so that a handler waiting for a call
// it made (which may come back here) never starves the next one.
ThreadPool& ObjectPool();

// Tokens are this many random bytes.
inline constexpr size_t kObjectTokenBytes = 16;

// One exported object: what a call on it needs. Immutable but for the
// object, which is dropped when unexported; the reference accounting lives
// in the registry.
class ExportEntry {
 public:
  ExportEntry(uint64_t id, std::string token, std::shared_ptr<Service> object, absl::Duration lease);
  ExportEntry(const ExportEntry&) = delete;
  ExportEntry& operator=(const ExportEntry&) = delete;

  uint64_t id() const { return id_; }
  absl::string_view token() const { return token_; }
  const std::string& service_name() const { return service_name_; }
  absl::Duration lease() const { return lease_; }
  // The method of the object's service named "/pkg.Service/Method", or null.
  const ServiceTable::Entry* FindMethod(absl::string_view full_name) const {
    return methods_.Find(full_name);
  }
  // The object while exported; null once unexported. A call in flight holds
  // its own copy.
  std::shared_ptr<Service> object() const;

 private:
  friend class ObjectRegistry;
  std::shared_ptr<Service> TakeObject();

  const uint64_t id_;
  const std::string token_;
  const std::string service_name_;
  const absl::Duration lease_;
  ServiceTable methods_;
  mutable absl::Mutex mu_;
  std::shared_ptr<Service> object_ ABSL_GUARDED_BY(mu_);
};

class ObjectRegistry {
 public:
  // What keeps a fresh export alive before any peer holds it.
  enum class Hold {
    kOwnerHandle,  // an Exported handle (DropOwnerHandle releases it)
    kUnsent,       // kUnclaimedRefTimeout for its reference to be sent
  };

  static ObjectRegistry& Get();

  absl::StatusOr<std::shared_ptr<ExportEntry>> Export(std::shared_ptr<Service> object,
                                                      ExportOptions options, Hold hold);
  // A reference to `entry`: id, token, this process, its endpoints, lease.
  void FillRef(const ExportEntry& entry, ObjectRef* ref) const;
  // The exported object `id` if `token` matches (compared in constant
  // time); null otherwise, whichever it is.
  std::shared_ptr<ExportEntry> Find(uint64_t id, absl::string_view token) const;

  // Connection `serial` took `count` references to `id` (the owner sent
  // them, or a third party adopted one); renews the lease. False if `id`
  // is not exported (nothing counted).
  bool AddHolder(uint64_t id, uint64_t serial, uint64_t count);
  // Connection `serial` released `count` references; more than it holds
  // is clamped (a confused or hostile peer cannot release others' holds).
  // Returns how many it still holds.
  uint64_t Release(uint64_t id, uint64_t serial, uint64_t count);
  // Connection `serial` (to `peer`) closed: it holds nothing any more. An
  // export with a lease keeps running until it expires.
  void ConnectionClosed(uint64_t serial, const std::vector<uint64_t>& ids, const PeerInfo& peer);

  // In-process holds (a Remote on an object of this process).
  void AddLocalHold(uint64_t id);
  void DropLocalHold(uint64_t id);
  void DropOwnerHandle(uint64_t id);
  void Revoke(uint64_t id);
  // References connections hold to `id` now (0 once unexported).
  uint64_t Holders(uint64_t id) const;
  // Exports alive now (tests: back to baseline after releases).
  size_t size() const;

  // Addresses at which servers of this process listen: references name
  // them so that third parties can dial the owner.
  void AddEndpoints(const std::vector<std::string>& endpoints);
  void RemoveEndpoints(const std::vector<std::string>& endpoints);

 private:
  struct Record {
    std::shared_ptr<ExportEntry> entry;
    absl::AnyInvocable<void() &&> on_unreferenced;
    std::function<void(const PeerInfo&)> on_holder_gone;
    absl::flat_hash_map<uint64_t, uint64_t> holders;  // connection serial -> references
    uint64_t total_holders = 0;
    uint64_t local_holds = 0;
    uint64_t owner_handles = 0;
    absl::Time keep_until = absl::InfinitePast();  // unsent grace, lease
    bool unsent = false;  // kUnsent and not held yet: keep_until is its grace
    absl::Time check_at = absl::InfinitePast();  // a Check() is scheduled then
  };
  using Later = std::vector<absl::AnyInvocable<void()>>;

  ObjectRegistry() = default;
  // Unexports record `id` if nothing keeps it; schedules a check at its
  // keep_until if only that does. Work outside mu_ goes to `later`.
  void MaybeUnexportLocked(uint64_t id, Later* later) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnexportLocked(uint64_t id, bool unreferenced, Later* later) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Check(uint64_t id);
  // Runs `later` on the object pool (user callbacks, dropping objects).
  static void RunLater(Later later);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Record> records_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> endpoints_ ABSL_GUARDED_BY(mu_);
};

// This process's nonce (wire.HostIdentity.process_nonce): the owner_process
// of the references it makes.
uint64_t LocalProcess();

// `bytes` random bytes from the kernel's CSPRNG (getrandom).
std::string RandomBytes(size_t bytes);

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_OBJECT_REGISTRY_H_
