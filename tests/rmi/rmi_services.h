// Implementations of the RMI test services (rmi_test.proto), shared by the
// tests and their peer process.
#ifndef LOCUS_TESTS_RMI_RMI_SERVICES_H_
#define LOCUS_TESTS_RMI_RMI_SERVICES_H_

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "locus/fd.h"
#include "locus/object.h"
#include "rmi_test.locus.h"

namespace rmitest {

// Resident memory of this process in KiB (VmRSS), 0 if unknown.
inline int64_t ResidentKiB() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return 0;
}

inline int64_t OpenFdCount() {
  int64_t count = 0;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (readdir(dir) != nullptr) ++count;
    closedir(dir);
  }
  return count - 3;  // ".", ".." and the directory's own descriptor
}

class SessionImpl final : public Session::Service {
 public:
  // Counts itself in `live`, which it shares: an object another process
  // never took may outlive the test that made it (by its grace period).
  explicit SessionImpl(std::shared_ptr<std::atomic<int64_t>> live) : live_(std::move(live)) {
    live_->fetch_add(1);
  }
  ~SessionImpl() override { live_->fetch_sub(1); }

  absl::Status Put(locus::ServerContext*, const PutRequest* request, Empty*) override {
    absl::MutexLock lock(&mu_);
    values_[request->key()] = request->value();
    return absl::OkStatus();
  }
  absl::Status Get(locus::ServerContext* context, const GetRequest* request, Value* reply) override {
    absl::MutexLock lock(&mu_);
    auto it = values_.find(request->key());
    if (it == values_.end()) return absl::NotFoundError("no such key");
    reply->set_value(it->second);
    reply->set_caller_pid(context->peer().pid);
    reply->set_transport(context->peer().transport);
    return absl::OkStatus();
  }
  absl::Status Scan(locus::ServerContext*, const GetRequest* request,
                    locus::ServerWriter<Value>* writer) override {
    std::vector<std::string> found;
    {
      absl::MutexLock lock(&mu_);
      for (auto it = values_.lower_bound(request->key());
           it != values_.end() && it->first.rfind(request->key(), 0) == 0; ++it) {
        found.push_back(it->second);
      }
    }
    for (const std::string& value : found) {
      Value message;
      message.set_value(value);
      if (!writer->Write(message)) return absl::CancelledError("client went away");
    }
    return absl::OkStatus();
  }

 private:
  const std::shared_ptr<std::atomic<int64_t>> live_;
  absl::Mutex mu_;
  std::map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
};

class KvImpl final : public Kv::Service {
 public:
  absl::Status Open(locus::ServerContext*, const OpenRequest* request, OpenReply* reply) override {
    if (request->has_progress()) {
      // Calls the caller back while its call is in flight.
      auto progress = locus::Remote<Progress>::From(request->progress());
      if (!progress.ok()) return progress.status();
      for (int percent : {10, 100}) {
        ProgressUpdate update;
        update.set_percent(percent);
        absl::StatusOr<Empty> reported = (*progress)->Report(update);
        if (!reported.ok()) return reported.status();
      }
    }
    auto session = std::make_shared<SessionImpl>(live_sessions_);
    PutRequest name;
    name.set_key("name");
    name.set_value(request->name());
    Empty ignored;
    (void)session->Put(nullptr, &name, &ignored);
    locus::ExportOptions options;
    options.lease = absl::Milliseconds(request->lease_ms());
    return locus::SetRef(reply->mutable_session(), std::move(session), std::move(options));
  }
  absl::Status Sessions(locus::ServerContext*, const Empty*, Counter* reply) override {
    reply->set_value(live_sessions_->load());
    return absl::OkStatus();
  }
  absl::Status CallSession(locus::ServerContext*, const RefHolder* request, Value* reply) override {
    auto session = locus::Remote<Session>::From(request->session());
    if (!session.ok()) return session.status();
    GetRequest get;
    get.set_key(request->key());
    absl::StatusOr<Value> value = (*session)->Get(get);
    if (!value.ok()) return value.status();
    *reply = *value;
    return absl::OkStatus();
  }
  absl::Status Hold(locus::ServerContext*, const RefHolder* request, Empty*) override {
    auto session = locus::Remote<Session>::From(request->session());
    if (!session.ok()) return session.status();
    absl::MutexLock lock(&mu_);
    held_.push_back(*std::move(session));
    return absl::OkStatus();
  }
  absl::Status Drop(locus::ServerContext*, const Empty*, Empty*) override {
    std::vector<locus::Remote<Session>> dropped;
    absl::MutexLock lock(&mu_);
    dropped.swap(held_);
    return absl::OkStatus();
  }
  absl::Status FdCount(locus::ServerContext*, const Empty*, Counter* reply) override {
    reply->set_value(OpenFdCount());
    return absl::OkStatus();
  }
  absl::Status ReportToCaller(locus::ServerContext* context, const Empty*, Empty*) override {
    if (context->caller_object() == nullptr) return absl::FailedPreconditionError("caller offers no object");
    auto progress = locus::Remote<Progress>::From(*context->caller_object());
    if (!progress.ok()) return progress.status();
    ProgressUpdate update;
    update.set_percent(42);
    absl::StatusOr<Empty> reported = (*progress)->Report(update);
    if (!reported.ok()) return reported.status();
    context->OnCallerGone([this](absl::Status) { callers_gone_.fetch_add(1); });
    return absl::OkStatus();
  }
  absl::Status CallersGone(locus::ServerContext*, const Empty*, Counter* reply) override {
    reply->set_value(callers_gone_.load());
    return absl::OkStatus();
  }
  absl::Status Memory(locus::ServerContext*, const Empty*, Counter* reply) override {
    reply->set_value(ResidentKiB());
    return absl::OkStatus();
  }
  absl::Status Restart(locus::ServerContext*, const Empty*, Empty*) override {
    if (!restart_) return absl::UnimplementedError("cannot restart here");
    restart_();
    return absl::OkStatus();
  }

  void set_restart(std::function<void()> restart) { restart_ = std::move(restart); }
  int64_t live_sessions() const { return live_sessions_->load(); }

 private:
  const std::shared_ptr<std::atomic<int64_t>> live_sessions_ =
      std::make_shared<std::atomic<int64_t>>(0);
  std::atomic<int64_t> callers_gone_{0};
  std::function<void()> restart_;
  absl::Mutex mu_;
  std::vector<locus::Remote<Session>> held_ ABSL_GUARDED_BY(mu_);
};

class ProgressImpl final : public Progress::Service {
 public:
  absl::Status Report(locus::ServerContext*, const ProgressUpdate* update, Empty*) override {
    absl::MutexLock lock(&mu_);
    reports_.push_back(update->percent());
    return absl::OkStatus();
  }
  std::vector<int> reports() {
    absl::MutexLock lock(&mu_);
    return reports_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int> reports_ ABSL_GUARDED_BY(mu_);
};

// Ping-pong between two Pingers, each calling the other back synchronously
// from inside its handler: a re-entrant chain `depth` deep.
class PingerImpl final : public Pinger::Service {
 public:
  absl::Status Ping(locus::ServerContext*, const PingRequest* request, PingReply* reply) override {
    if (request->depth() <= 0) {
      reply->set_hops(0);
      return absl::OkStatus();
    }
    auto back = locus::Remote<Pinger>::From(request->back());
    if (!back.ok()) return back.status();
    PingRequest next;
    next.set_depth(request->depth() - 1);
    {
      absl::MutexLock lock(&mu_);
      if (!self_.has_value()) return absl::FailedPreconditionError("pinger has no reference to itself");
      *next.mutable_back() = self_->ref();
    }
    absl::StatusOr<PingReply> answer = (*back)->Ping(next);
    if (!answer.ok()) return answer.status();
    reply->set_hops(answer->hops() + 1);
    return absl::OkStatus();
  }
  // The reference this pinger hands out to be called back on.
  void set_self(locus::Exported self) {
    absl::MutexLock lock(&mu_);
    self_ = std::move(self);
  }

 private:
  absl::Mutex mu_;
  std::optional<locus::Exported> self_ ABSL_GUARDED_BY(mu_);
};

class FilesImpl final : public Files::Service {
 public:
  absl::Status OpenFile(locus::ServerContext*, const FileRequest* request, FileReply* reply) override {
    locus::OwnedFd fd(open(request->path().c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return absl::NotFoundError("cannot open " + request->path());
    locus::SetFd(reply->mutable_fd(), std::move(fd));
    return absl::OkStatus();
  }
  absl::Status Inspect(locus::ServerContext*, const FileUpload* upload, FileCheck* reply) override {
    absl::StatusOr<locus::OwnedFd> fd = locus::TakeFd(upload->fd());
    if (!fd.ok()) return fd.status();
    struct stat st;
    if (fstat(fd->get(), &st) != 0) return absl::InternalError("fstat failed");
    reply->set_inode(st.st_ino);
    char buffer[256];
    const ssize_t n = pread(fd->get(), buffer, sizeof(buffer), 0);
    if (n > 0) reply->set_content(std::string(buffer, static_cast<size_t>(n)));
    return absl::OkStatus();
  }
  absl::Status Ignore(locus::ServerContext*, const FileUpload*, Empty*) override {
    return absl::OkStatus();
  }
};

}  // namespace rmitest

#endif  // LOCUS_TESTS_RMI_RMI_SERVICES_H_
