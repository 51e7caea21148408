// files_client: uses the remote objects of files_server (files.proto).
//
//   files_client <address> [--name NAME] [--lines N]
//   files_client unix:/tmp/files.sock
//   files_client shm:/tmp/files.sock          # the same server, over shared memory
//
// Gets the server's Directory (its bootstrap object), opens NAME (default
// notes.txt) and works on the File object the reply returns: Write, Stat,
// Read, Share (a descriptor of the server's open file; unix and shm only),
// then has the server Copy it while this client's Progress object prints
// every report, and finally Closes the file. Prints what happens, one line
// per step; exits non-zero with a message on stderr if a step fails in a way
// it should not.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "files.locus.h"
#include "locus/fd.h"
#include "locus/locus.h"
#include "locus/object.h"

namespace {

namespace files = ::locus::samples::files;

// Called by the server while a Copy runs: on a runtime thread of this
// process, while main() waits for the Copy's reply.
class ProgressPrinter final : public files::Progress::Service {
 public:
  absl::Status Report(locus::ServerContext*, const files::ProgressUpdate* update,
                      files::ProgressAck*) override {
    reports_.fetch_add(1);
    std::printf("  progress: %llu/%llu bytes of \"%s\"\n",
                static_cast<unsigned long long>(update->done()),
                static_cast<unsigned long long>(update->total()), update->name().c_str());
    std::fflush(stdout);
    return absl::OkStatus();
  }
  int reports() const { return reports_.load(); }

 private:
  std::atomic<int> reports_{0};
};

int Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s <address> [--name NAME] [--lines N]\n"
               "  address: unix:/path/to.sock  shm:/path/to.sock  tcp://host:port\n"
               "  --name NAME: the file to work on (default notes.txt; its copy is NAME.copy)\n"
               "  --lines N: lines to write (default 64)\n",
               argv0);
  return 2;
}

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "files_client: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

int main(int argc, char** argv) {
  std::string address;
  std::string name = "notes.txt";
  int lines = 64;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") return Usage(argv[0]);
    if (arg == "--name" && i + 1 < argc) {
      name = argv[++i];
    } else if (arg == "--lines" && i + 1 < argc) {
      if (!absl::SimpleAtoi(argv[++i], &lines) || lines < 1) return Usage(argv[0]);
    } else if (address.empty() && arg.rfind("--", 0) != 0) {
      address = arg;
    } else {
      return Usage(argv[0]);
    }
  }
  if (address.empty()) return Usage(argv[0]);

  locus::ChannelOptions channel_options;
  channel_options.connect_timeout = absl::Seconds(5);
  absl::StatusOr<std::shared_ptr<locus::Channel>> channel = locus::Connect(address, channel_options);
  if (!channel.ok()) return Fail("cannot connect to " + address, channel.status());
  const std::string transport = (*channel)->transport_name();
  std::printf("connected to %s over %s\n", address.c_str(), transport.c_str());
  // Every call below has a deadline, so a stuck server cannot hang the client.
  const locus::CallOptions timeout = locus::CallOptions::WithTimeout(absl::Seconds(10));

  // The server's root object, offered with the handshake.
  absl::StatusOr<locus::Remote<files::Directory>> directory =
      locus::Remote<files::Directory>::Bootstrap(*channel);
  if (!directory.ok()) return Fail("no Directory offered", directory.status());

  // Open returns an object: a File with its own methods.
  files::OpenRequest open;
  open.set_name(name);
  open.set_create(true);
  open.set_truncate(true);
  absl::StatusOr<files::OpenReply> opened = (*directory)->Open(open, timeout);
  if (!opened.ok()) return Fail("Open " + name, opened.status());
  absl::StatusOr<locus::Remote<files::File>> file = files::OpenReplyRefs::file(*opened);
  if (!file.ok()) return Fail("the File in Open's reply", file.status());
  std::printf("Open \"%s\" -> a File object\n", name.c_str());

  files::WriteRequest write;
  std::string text;
  for (int i = 1; i <= lines; ++i) text += absl::StrCat("line ", i, " of ", name, "\n");
  write.set_data(text);
  absl::StatusOr<files::WriteReply> written = (*file)->Write(write, timeout);
  if (!written.ok()) return Fail("Write", written.status());
  std::printf("Write -> %zu bytes (size now %llu)\n", text.size(),
              static_cast<unsigned long long>(written->size()));

  absl::StatusOr<files::StatReply> stat = (*file)->Stat(files::StatRequest(), timeout);
  if (!stat.ok()) return Fail("Stat", stat.status());
  std::printf("Stat  -> \"%s\", %llu bytes\n", stat->name().c_str(),
              static_cast<unsigned long long>(stat->size()));

  files::ReadRequest read;
  read.set_length(64);
  absl::StatusOr<files::ReadReply> data = (*file)->Read(read, timeout);
  if (!data.ok()) return Fail("Read", data.status());
  std::printf("Read  -> \"%s\"...\n", FirstLine(data->data()).c_str());

  // A descriptor of the server's open file: read here without another call.
  absl::StatusOr<files::ShareReply> shared = (*file)->Share(files::ShareRequest(), timeout);
  if (shared.ok()) {
    absl::StatusOr<locus::OwnedFd> fd = locus::TakeFd(shared->fd());
    if (!fd.ok()) return Fail("the descriptor in Share's reply", fd.status());
    char buffer[64];
    const ssize_t n = pread(fd->get(), buffer, sizeof(buffer), 0);
    if (n <= 0) return Fail("reading the shared descriptor", absl::InternalError("pread failed"));
    std::printf("Share -> descriptor %d, read here: \"%s\"...\n", fd->get(),
                FirstLine(std::string(buffer, static_cast<size_t>(n))).c_str());
  } else if (shared.status().code() == absl::StatusCode::kFailedPrecondition) {
    std::printf("Share -> no descriptor over %s: %s\n", transport.c_str(),
                shared.status().ToString().c_str());
  } else {
    return Fail("Share", shared.status());
  }

  // Copy, with this client's Progress object in the request: the server
  // calls it back after every chunk, before Copy returns.
  auto progress = std::make_shared<ProgressPrinter>();
  files::CopyRequest copy;
  copy.set_from(name);
  copy.set_to(name + ".copy");
  copy.set_chunk_bytes(512);
  absl::Status set = files::CopyRequestRefs::set_progress(&copy, progress);
  if (!set.ok()) return Fail("exporting the Progress object", set);
  std::printf("Copy \"%s\" -> \"%s\"\n", copy.from().c_str(), copy.to().c_str());
  absl::StatusOr<files::CopyReply> copied = (*directory)->Copy(copy, timeout);
  if (!copied.ok()) return Fail("Copy", copied.status());
  std::printf("Copy  -> %llu bytes; %d progress reports received during the call (server made %u)\n",
              static_cast<unsigned long long>(copied->bytes()), progress->reports(),
              copied->reports());
  if (progress->reports() != static_cast<int>(copied->reports())) {
    return Fail("Copy", absl::InternalError("the reports received and made differ"));
  }

  // The copy, through a second File object.
  open.set_name(copy.to());
  open.set_create(false);
  open.set_truncate(false);
  absl::StatusOr<files::OpenReply> reopened = (*directory)->Open(open, timeout);
  if (!reopened.ok()) return Fail("Open " + copy.to(), reopened.status());
  absl::StatusOr<locus::Remote<files::File>> copy_file = files::OpenReplyRefs::file(*reopened);
  if (!copy_file.ok()) return Fail("the File in Open's reply", copy_file.status());
  read.set_length(static_cast<uint32_t>(text.size()));
  absl::StatusOr<files::ReadReply> copy_data = (*copy_file)->Read(read, timeout);
  if (!copy_data.ok()) return Fail("Read " + copy.to(), copy_data.status());
  std::printf("Read \"%s\" -> %zu bytes, %s\n", copy.to().c_str(), copy_data->data().size(),
              copy_data->data() == text ? "the same as written" : "DIFFERENT from what was written");
  if (copy_data->data() != text) return 1;

  absl::StatusOr<files::CloseReply> closed = (*file)->Close(files::CloseRequest(), timeout);
  if (!closed.ok()) return Fail("Close", closed.status());
  std::printf("Close -> ok\n");
  absl::StatusOr<files::StatReply> after = (*file)->Stat(files::StatRequest(), timeout);
  std::printf("Stat after Close -> %s\n", after.status().ToString().c_str());
  if (after.ok()) return 1;

  // The server releases both File objects once their Remotes are gone (at
  // the end of main), or when this process's connection closes, whichever
  // comes first; it logs each release.
  std::printf("done over %s\n", transport.c_str());
  return 0;
}
