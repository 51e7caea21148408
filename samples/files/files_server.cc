// files_server: offers one directory as a remote object (files.proto).
//
//   files_server --root DIR <address>...
//   files_server --root /tmp/files unix:/tmp/files.sock tcp://127.0.0.1:0
//
// The Directory is the server's bootstrap object: a client gets it with
// locus::Remote<Directory>::Bootstrap(channel). Directory.Open returns a new
// File object per call; Directory.Copy calls the client's Progress object
// back while it runs. Prints "listening on <address>" per address once
// ready, then one line per Open, Copy and released File. Stops cleanly on
// SIGINT (Ctrl-C) or SIGTERM.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "files.locus.h"
#include "locus/fd.h"
#include "locus/locus.h"
#include "locus/object.h"

namespace {

namespace files = ::locus::samples::files;

constexpr uint32_t kMaxRead = 1u << 20;
constexpr uint32_t kDefaultChunk = 4096;

// Handlers of different objects (and concurrent calls on one object) run on
// the runtime's object pool at the same time: one printf per line keeps
// lines whole.
void Log(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

absl::Status ErrnoStatus(const std::string& what, int error) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(error));
  if (error == ENOENT) return absl::NotFoundError(message);
  if (error == EACCES || error == EPERM) return absl::PermissionDeniedError(message);
  return absl::InternalError(message);
}

// Clients name files, never paths: nothing outside the directory is reachable.
absl::Status CheckName(const std::string& name) {
  if (name.empty() || name.size() > 255 || name[0] == '.') {
    return absl::InvalidArgumentError(absl::StrCat("bad file name \"", name, "\""));
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("bad file name \"", name, "\""));
  }
  return absl::OkStatus();
}

// One open file. Owns its descriptor; Close (or the object's destruction,
// once no client holds it) closes it. Thread-safe.
class FileImpl final : public files::File::Service {
 public:
  FileImpl(std::string name, locus::OwnedFd fd) : name_(std::move(name)), fd_(std::move(fd)) {}

  absl::Status Read(locus::ServerContext*, const files::ReadRequest* request,
                    files::ReadReply* reply) override {
    if (request->length() > kMaxRead) {
      return absl::InvalidArgumentError(absl::StrCat("reads are at most ", kMaxRead, " bytes"));
    }
    absl::MutexLock lock(&mu_);
    if (!fd_.valid()) return Closed();
    std::string data(request->length(), '\0');
    const ssize_t n = pread(fd_.get(), data.data(), data.size(), static_cast<off_t>(request->offset()));
    if (n < 0) return ErrnoStatus("read " + name_, errno);
    data.resize(static_cast<size_t>(n));
    reply->set_data(std::move(data));
    return absl::OkStatus();
  }

  absl::Status Write(locus::ServerContext*, const files::WriteRequest* request,
                     files::WriteReply* reply) override {
    absl::MutexLock lock(&mu_);
    if (!fd_.valid()) return Closed();
    const std::string& data = request->data();
    size_t written = 0;
    while (written < data.size()) {
      const ssize_t n = pwrite(fd_.get(), data.data() + written, data.size() - written,
                               static_cast<off_t>(request->offset() + written));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus("write " + name_, errno);
      written += static_cast<size_t>(n);
    }
    struct stat st;
    if (fstat(fd_.get(), &st) != 0) return ErrnoStatus("stat " + name_, errno);
    reply->set_size(static_cast<uint64_t>(st.st_size));
    return absl::OkStatus();
  }

  absl::Status Stat(locus::ServerContext*, const files::StatRequest*,
                    files::StatReply* reply) override {
    absl::MutexLock lock(&mu_);
    if (!fd_.valid()) return Closed();
    struct stat st;
    if (fstat(fd_.get(), &st) != 0) return ErrnoStatus("stat " + name_, errno);
    reply->set_name(name_);
    reply->set_size(static_cast<uint64_t>(st.st_size));
    return absl::OkStatus();
  }

  absl::Status Share(locus::ServerContext*, const files::ShareRequest*,
                     files::ShareReply* reply) override {
    absl::MutexLock lock(&mu_);
    if (!fd_.valid()) return Closed();
    locus::OwnedFd copy(fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0));
    if (!copy.valid()) return ErrnoStatus("dup " + name_, errno);
    // Given, not lent: the reply is sent after this handler returns, and the
    // runtime closes the duplicate once it has been sent (or the send failed,
    // as it does over TCP).
    locus::SetFd(reply->mutable_fd(), std::move(copy));
    return absl::OkStatus();
  }

  absl::Status Close(locus::ServerContext*, const files::CloseRequest*, files::CloseReply*) override {
    absl::MutexLock lock(&mu_);
    if (!fd_.valid()) return Closed();
    fd_.reset();
    return absl::OkStatus();
  }

 private:
  absl::Status Closed() const { return absl::FailedPreconditionError(name_ + " is closed"); }

  const std::string name_;
  absl::Mutex mu_;
  locus::OwnedFd fd_ ABSL_GUARDED_BY(mu_);
};

class DirectoryImpl final : public files::Directory::Service {
 public:
  explicit DirectoryImpl(std::string root) : root_(std::move(root)) {}

  absl::Status Open(locus::ServerContext* context, const files::OpenRequest* request,
                    files::OpenReply* reply) override {
    if (absl::Status status = CheckName(request->name()); !status.ok()) return status;
    int flags = O_RDWR | O_CLOEXEC;
    if (request->create()) flags |= O_CREAT;
    if (request->truncate()) flags |= O_TRUNC;
    locus::OwnedFd fd(open(Path(request->name()).c_str(), flags, 0644));
    if (!fd.valid()) return ErrnoStatus("open " + request->name(), errno);

    const int id = ++sessions_;
    const std::string label = absl::StrCat("session ", id, " (\"", request->name(), "\")");
    Log(absl::StrCat("Open \"", request->name(), "\" over ", context->peer().transport, ": ",
                     label));
    locus::ExportOptions options;
    // Runs once the last client reference is gone: the client dropped its
    // Remote, or its connection closed. The object (and its descriptor) goes
    // right after.
    options.on_unreferenced = [label] { Log(label + " released: no client holds it"); };
    return files::OpenReplyRefs::set_file(
        reply, std::make_shared<FileImpl>(request->name(), std::move(fd)), std::move(options));
  }

  absl::Status Copy(locus::ServerContext* context, const files::CopyRequest* request,
                    files::CopyReply* reply) override {
    if (absl::Status status = CheckName(request->from()); !status.ok()) return status;
    if (absl::Status status = CheckName(request->to()); !status.ok()) return status;
    if (request->from() == request->to()) {
      return absl::InvalidArgumentError("copying a file onto itself would empty it");
    }
    // The caller's own object, reached back over the caller's connection.
    // NOT_FOUND when the request carries none: then nobody is told.
    absl::StatusOr<locus::Remote<files::Progress>> progress =
        files::CopyRequestRefs::progress(*request);
    if (!progress.ok() && progress.status().code() != absl::StatusCode::kNotFound) {
      return progress.status();
    }
    locus::OwnedFd from(open(Path(request->from()).c_str(), O_RDONLY | O_CLOEXEC));
    if (!from.valid()) return ErrnoStatus("open " + request->from(), errno);
    locus::OwnedFd to(open(Path(request->to()).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!to.valid()) return ErrnoStatus("create " + request->to(), errno);
    struct stat st;
    if (fstat(from.get(), &st) != 0) return ErrnoStatus("stat " + request->from(), errno);

    std::vector<char> chunk(request->chunk_bytes() > 0 ? request->chunk_bytes() : kDefaultChunk);
    files::ProgressUpdate update;
    update.set_name(request->from());
    update.set_total(static_cast<uint64_t>(st.st_size));
    uint64_t done = 0;
    uint32_t reports = 0;
    for (;;) {
      const ssize_t n = read(from.get(), chunk.data(), chunk.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus("read " + request->from(), errno);
      if (n == 0) break;
      for (ssize_t written = 0; written < n;) {
        const ssize_t w = write(to.get(), chunk.data() + written, static_cast<size_t>(n - written));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return ErrnoStatus("write " + request->to(), errno);
        written += w;
      }
      done += static_cast<uint64_t>(n);
      if (progress.ok()) {
        // Synchronous: the client has seen this report before the next chunk.
        update.set_done(done);
        absl::StatusOr<files::ProgressAck> ack = (*progress)->Report(update);
        if (!ack.ok()) {
          return absl::Status(ack.status().code(),
                              absl::StrCat("progress report failed: ", ack.status().message()));
        }
        ++reports;
      }
    }
    Log(absl::StrCat("Copy \"", request->from(), "\" -> \"", request->to(), "\" over ",
                     context->peer().transport, ": ", done, " bytes, ", reports,
                     " progress reports"));
    reply->set_bytes(done);
    reply->set_reports(reports);
    return absl::OkStatus();
  }

 private:
  std::string Path(const std::string& name) const { return root_ + "/" + name; }

  const std::string root_;
  std::atomic<int> sessions_{0};
};

int Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --root DIR <address>...\n"
               "  addresses: unix:/path/to.sock  unix-abstract:name  tcp://host:port\n"
               "             (a client reaches a unix: address over shared memory as shm:<path>)\n"
               "  example:   %s --root /tmp/files unix:/tmp/files.sock tcp://127.0.0.1:0\n",
               argv0, argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string root;
  std::vector<std::string> addresses;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") return Usage(argv[0]);
    if (arg == "--root") {
      if (i + 1 >= argc) return Usage(argv[0]);
      root = argv[++i];
    } else if (arg.rfind("--root=", 0) == 0) {
      root = arg.substr(7);
    } else {
      addresses.push_back(arg);
    }
  }
  if (root.empty() || addresses.empty()) return Usage(argv[0]);
  struct stat st;
  if (stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "files_server: --root %s is not a directory\n", root.c_str());
    return 2;
  }

  // Block SIGINT/SIGTERM before any thread exists, so every thread the
  // server starts inherits the mask and the main thread alone receives them
  // through sigwait() below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  locus::ServerOptions options;
  // Copy calls the client's Progress back synchronously: handlers on a pool,
  // not inline on the I/O thread that must read the answer (locus/server.h).
  options.handler_threads = 4;
  // Offered to every client with the handshake; its calls run as the
  // server's handlers do (on the pool above), so Copy may wait for the
  // client's Progress object, whose reply arrives on the very connection
  // the Copy came in on.
  options.bootstrap = std::make_shared<DirectoryImpl>(root);
  locus::Server server(options);
  absl::Status status;
  for (const std::string& address : addresses) {
    status = server.AddListeningAddress(address);
    if (!status.ok()) break;
  }
  if (status.ok()) status = server.Start();
  if (!status.ok()) {
    std::fprintf(stderr, "files_server: cannot start: %s\n", status.ToString().c_str());
    return 1;
  }
  for (const std::string& address : server.listening_addresses()) {
    std::printf("listening on %s\n", address.c_str());
  }
  std::printf("serving %s (Ctrl-C to stop)\nready\n", root.c_str());
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::printf("got %s, shutting down\n", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  std::fflush(stdout);
  // Let calls in progress finish for up to a second.
  server.Shutdown(absl::Now() + absl::Seconds(1));
  server.Wait();
  std::printf("stopped\n");
  return 0;
}
