#include "internal/object_registry.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/timer_queue.h"
#include "internal/host_identity.h"

namespace locus::internal {

ThreadPool& ObjectPool() {
  // Leaked: handlers may still run while static destructors do.
  static ThreadPool* pool = new ThreadPool(0, ThreadPool::kUnbounded, absl::Seconds(10));
  return *pool;
}

std::string RandomBytes(size_t bytes) {
  std::string out(bytes, '\0');
  size_t filled = 0;
  while (filled < bytes) {
    const ssize_t n = getrandom(out.data() + filled, bytes - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      LOCUS_LOG(FATAL) << "getrandom failed: " << std::strerror(errno);
    }
    filled += static_cast<size_t>(n);
  }
  return out;
}

uint64_t LocalProcess() { return LocalHostIdentity().process_nonce(); }

namespace {

bool ConstantTimeEqual(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

ExportEntry::ExportEntry(uint64_t id, std::string token, std::shared_ptr<Service> object,
                         absl::Duration lease)
    : id_(id),
      token_(std::move(token)),
      service_name_(object->name()),
      lease_(lease),
      object_(std::move(object)) {
  absl::MutexLock lock(&mu_);
  (void)methods_.Add(object_.get());  // one service: no name clash possible
}

std::shared_ptr<Service> ExportEntry::object() const {
  absl::MutexLock lock(&mu_);
  return object_;
}

std::shared_ptr<Service> ExportEntry::TakeObject() {
  absl::MutexLock lock(&mu_);
  return std::move(object_);
}

ObjectRegistry& ObjectRegistry::Get() {
  static ObjectRegistry* registry = new ObjectRegistry();
  return *registry;
}

absl::StatusOr<std::shared_ptr<ExportEntry>> ObjectRegistry::Export(std::shared_ptr<Service> object,
                                                                     ExportOptions options,
                                                                     Hold hold) {
  if (object == nullptr) return absl::InvalidArgumentError("cannot export a null object");
  std::string token = RandomBytes(kObjectTokenBytes);
  absl::MutexLock lock(&mu_);
  uint64_t id = 0;
  do {
    const std::string bytes = RandomBytes(sizeof(id));
    std::memcpy(&id, bytes.data(), sizeof(id));
  } while (id == 0 || records_.contains(id));
  Record& record = records_[id];
  record.entry = std::make_shared<ExportEntry>(id, std::move(token), std::move(object), options.lease);
  record.on_unreferenced = std::move(options.on_unreferenced);
  record.on_holder_gone = std::move(options.on_holder_gone);
  if (hold == Hold::kOwnerHandle) {
    record.owner_handles = 1;
  } else {
    record.unsent = true;
    record.keep_until = absl::Now() + kUnclaimedRefTimeout;
    record.check_at = record.keep_until;
    const uint64_t checked = id;
    TimerQueue::Get().Schedule(record.keep_until, [checked] { Get().Check(checked); });
  }
  return record.entry;
}

void ObjectRegistry::FillRef(const ExportEntry& entry, ObjectRef* ref) const {
  ref->Clear();
  ref->set_service(entry.service_name());
  ref->set_object_id(entry.id());
  ref->set_token(std::string(entry.token()));
  ref->set_owner_process(LocalHostIdentity().process_nonce());
  ref->set_lease_ms(static_cast<uint32_t>(
      std::min<int64_t>(absl::ToInt64Milliseconds(entry.lease()), UINT32_MAX)));
  absl::MutexLock lock(&mu_);
  for (const std::string& endpoint : endpoints_) ref->add_endpoints(endpoint);
}

std::shared_ptr<ExportEntry> ObjectRegistry::Find(uint64_t id, absl::string_view token) const {
  std::shared_ptr<ExportEntry> entry;
  {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(id);
    if (it == records_.end()) return nullptr;
    entry = it->second.entry;
  }
  if (!ConstantTimeEqual(entry->token(), token)) return nullptr;
  return entry;
}

bool ObjectRegistry::AddHolder(uint64_t id, uint64_t serial, uint64_t count) {
  absl::MutexLock lock(&mu_);
  auto it = records_.find(id);
  if (it == records_.end()) return false;
  Record& record = it->second;
  record.holders[serial] += count;
  record.total_holders += count;
  if (record.unsent) {
    // Held now: the grace for sending it is over.
    record.unsent = false;
    record.keep_until = absl::InfinitePast();
  }
  if (record.entry->lease() > absl::ZeroDuration()) {
    record.keep_until = std::max(record.keep_until, absl::Now() + record.entry->lease());
  }
  return true;
}

uint64_t ObjectRegistry::Release(uint64_t id, uint64_t serial, uint64_t count) {
  Later later;
  uint64_t left = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(id);
    if (it == records_.end()) return 0;
    Record& record = it->second;
    auto held = record.holders.find(serial);
    if (held == record.holders.end()) return 0;
    const uint64_t released = std::min(count, held->second);
    held->second -= released;
    record.total_holders -= released;
    left = held->second;
    if (left == 0) record.holders.erase(held);
    MaybeUnexportLocked(id, &later);
  }
  RunLater(std::move(later));
  return left;
}

void ObjectRegistry::ConnectionClosed(uint64_t serial, const std::vector<uint64_t>& ids,
                                      const PeerInfo& peer) {
  Later later;
  {
    absl::MutexLock lock(&mu_);
    for (uint64_t id : ids) {
      auto it = records_.find(id);
      if (it == records_.end()) continue;
      Record& record = it->second;
      auto held = record.holders.find(serial);
      if (held == record.holders.end()) continue;
      record.total_holders -= held->second;
      record.holders.erase(held);
      if (record.entry->lease() > absl::ZeroDuration()) {
        record.keep_until = std::max(record.keep_until, absl::Now() + record.entry->lease());
      }
      if (record.on_holder_gone) {
        later.push_back([callback = record.on_holder_gone, peer] { callback(peer); });
      }
      MaybeUnexportLocked(id, &later);
    }
  }
  RunLater(std::move(later));
}

void ObjectRegistry::AddLocalHold(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = records_.find(id);
  if (it == records_.end()) return;
  ++it->second.local_holds;
  if (it->second.unsent) {
    it->second.unsent = false;
    it->second.keep_until = absl::InfinitePast();
  }
}

void ObjectRegistry::DropLocalHold(uint64_t id) {
  Later later;
  {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(id);
    if (it == records_.end() || it->second.local_holds == 0) return;
    --it->second.local_holds;
    MaybeUnexportLocked(id, &later);
  }
  RunLater(std::move(later));
}

void ObjectRegistry::DropOwnerHandle(uint64_t id) {
  Later later;
  {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(id);
    if (it == records_.end() || it->second.owner_handles == 0) return;
    --it->second.owner_handles;
    MaybeUnexportLocked(id, &later);
  }
  RunLater(std::move(later));
}

void ObjectRegistry::Revoke(uint64_t id) {
  Later later;
  {
    absl::MutexLock lock(&mu_);
    if (records_.contains(id)) UnexportLocked(id, /*unreferenced=*/false, &later);
  }
  RunLater(std::move(later));
}

uint64_t ObjectRegistry::Holders(uint64_t id) const {
  absl::MutexLock lock(&mu_);
  auto it = records_.find(id);
  return it == records_.end() ? 0 : it->second.total_holders;
}

size_t ObjectRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return records_.size();
}

void ObjectRegistry::AddEndpoints(const std::vector<std::string>& endpoints) {
  absl::MutexLock lock(&mu_);
  endpoints_.insert(endpoints_.end(), endpoints.begin(), endpoints.end());
}

void ObjectRegistry::RemoveEndpoints(const std::vector<std::string>& endpoints) {
  absl::MutexLock lock(&mu_);
  for (const std::string& endpoint : endpoints) {
    auto it = std::find(endpoints_.begin(), endpoints_.end(), endpoint);
    if (it != endpoints_.end()) endpoints_.erase(it);
  }
}

void ObjectRegistry::MaybeUnexportLocked(uint64_t id, Later* later) {
  Record& record = records_.at(id);
  if (record.owner_handles > 0 || record.total_holders > 0 || record.local_holds > 0) return;
  const absl::Time now = absl::Now();
  if (now < record.keep_until) {
    // One pending check per time (a release loop must not pile up timers).
    if (record.check_at != record.keep_until) {
      record.check_at = record.keep_until;
      TimerQueue::Get().Schedule(record.keep_until, [id] { Get().Check(id); });
    }
    return;
  }
  UnexportLocked(id, /*unreferenced=*/true, later);
}

void ObjectRegistry::UnexportLocked(uint64_t id, bool unreferenced, Later* later) {
  auto it = records_.find(id);
  Record record = std::move(it->second);
  records_.erase(it);
  // The object is dropped after on_unreferenced ran, outside the lock: its
  // destructor is user code.
  later->push_back([entry = std::move(record.entry), unreferenced,
                    callback = std::move(record.on_unreferenced)]() mutable {
    if (unreferenced && callback) std::move(callback)();
    std::shared_ptr<Service> object = entry->TakeObject();
    object.reset();
  });
}

void ObjectRegistry::Check(uint64_t id) {
  Later later;
  {
    absl::MutexLock lock(&mu_);
    if (!records_.contains(id)) return;
    // Early (the timer's clock) or renewed: MaybeUnexportLocked schedules
    // the next check.
    MaybeUnexportLocked(id, &later);
  }
  RunLater(std::move(later));
}

void ObjectRegistry::RunLater(Later later) {
  if (later.empty()) return;
  ObjectPool().Post([later = std::move(later)]() mutable {
    for (auto& task : later) task();
  });
}

}  // namespace locus::internal
