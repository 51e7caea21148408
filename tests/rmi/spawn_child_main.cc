// The child process of the parent/child tests (spawn_test.cc).
//
//   locus_spawn_child child [--no-root] [--hello] [--report-fd=N] [--exit-code=N]
//     ConnectToParent offering a spawntest.Peer (none with --no-root); with
//     --hello, calls the parent's root Say("hello from the child") at once;
//     then waits until the link ends and exits with --exit-code (0). With
//     --report-fd, writes "connected <pid> <transport>" and then
//     "ended <status>" lines to descriptor N.
//   locus_spawn_child middle <report-fd>
//     A parent: SpawnChild's itself as "child --report-fd=<report-fd>",
//     prints "ready" on stdout and sleeps until killed.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "locus/spawn.h"
#include "spawn_services.h"

namespace {

// The link, once ConnectToParent returned: the child's root reaches the
// parent's through it, and may be called before then.
class LinkHolder {
 public:
  void Set(locus::ParentLink* link) {
    absl::MutexLock lock(&mu_);
    link_ = link;
  }
  absl::StatusOr<locus::Remote<spawntest::Peer>> ParentRoot() {
    absl::MutexLock lock(&mu_);
    auto set = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return link_ != nullptr; };
    if (!mu_.AwaitWithDeadline(absl::Condition(&set), absl::Now() + absl::Seconds(60))) {
      return absl::DeadlineExceededError("no link to the parent yet");
    }
    return link_->Root<spawntest::Peer>();
  }

 private:
  absl::Mutex mu_;
  locus::ParentLink* link_ ABSL_GUARDED_BY(mu_) = nullptr;
};

void Report(int fd, const std::string& line) {
  if (fd < 0) return;
  const std::string text = line + "\n";
  if (write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    std::fprintf(stderr, "locus_spawn_child: cannot report \"%s\"\n", line.c_str());
  }
}

int RunChild(int argc, char** argv) {
  bool offer_root = true, hello = false;
  int report_fd = -1, exit_code = 0;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--no-root") {
      offer_root = false;
    } else if (arg == "--hello") {
      hello = true;
    } else if (absl::StartsWith(arg, "--report-fd=")) {
      if (!absl::SimpleAtoi(arg.substr(12), &report_fd)) return 2;
    } else if (absl::StartsWith(arg, "--exit-code=")) {
      if (!absl::SimpleAtoi(arg.substr(12), &exit_code)) return 2;
    } else {
      std::fprintf(stderr, "locus_spawn_child: unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  LinkHolder holder;
  std::shared_ptr<spawntest::PeerImpl> root;
  if (offer_root) root = std::make_shared<spawntest::PeerImpl>([&holder] { return holder.ParentRoot(); });
  absl::StatusOr<std::unique_ptr<locus::ParentLink>> link = locus::ConnectToParent(root);
  if (!link.ok()) {
    std::fprintf(stderr, "locus_spawn_child: %s\n", link.status().ToString().c_str());
    return 3;
  }
  holder.Set(link->get());
  Report(report_fd, absl::StrCat("connected ", getpid(), " ", (*link)->transport_name()));
  if (hello) {
    absl::StatusOr<locus::Remote<spawntest::Peer>> parent = (*link)->Root<spawntest::Peer>();
    spawntest::Text text;
    text.set_text("hello from the child");
    absl::Status said = parent.ok() ? (*parent)->Say(text).status() : parent.status();
    if (!said.ok()) {
      std::fprintf(stderr, "locus_spawn_child: hello: %s\n", said.ToString().c_str());
      return 4;
    }
  }
  const absl::Status ended = (*link)->WaitUntilDisconnected();
  Report(report_fd, absl::StrCat("ended ", ended.ToString()));
  return exit_code;
}

int RunMiddle(int argc, char** argv) {
  if (argc != 3) return 2;
  absl::StatusOr<std::unique_ptr<locus::ChildProcess>> child =
      locus::SpawnChild({"/proc/self/exe", "child", absl::StrCat("--report-fd=", argv[2])});
  if (!child.ok()) {
    std::fprintf(stderr, "locus_spawn_child: %s\n", child.status().ToString().c_str());
    return 3;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;) absl::SleepFor(absl::Hours(1));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "child") return RunChild(argc, argv);
  if (mode == "middle") return RunMiddle(argc, argv);
  std::fprintf(stderr, "usage: %s child [options] | middle <report-fd>\n", argv[0]);
  return 2;
}
