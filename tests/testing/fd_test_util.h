// Helpers for tests of file descriptors carried with frames (contract 12 of
// locus/transport.h): which open file a descriptor refers to, how many
// descriptors this process has open (to show none leaked), and a raw
// sendmsg with descriptors attached (to play a peer that sends what no
// Locus peer would).
//
// Example:
//   const int baseline = locus::testing::OpenFdCount();
//   locus::testing::FileId sent;
//   ASSERT_EQ(locus::testing::SendRawWithFds(raw_socket, bytes, 3, &sent), 0);
//   ...
//   EXPECT_EQ(locus::testing::AwaitOpenFdCount(baseline), baseline);
#ifndef LOCUS_TESTS_TESTING_FD_TEST_UTIL_H_
#define LOCUS_TESTS_TESTING_FD_TEST_UTIL_H_

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace locus::testing {

// Which open file a descriptor refers to (all zero if it is not open).
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const FileId& other) const { return dev == other.dev && ino == other.ino; }
};

inline FileId IdOf(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return FileId{};
  return FileId{st.st_dev, st.st_ino};
}

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LOCUS_TESTING_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) && !defined(LOCUS_TESTING_TSAN)
#define LOCUS_TESTING_TSAN 1
#endif

#ifdef LOCUS_TESTING_TSAN
extern "C" void __sanitizer_symbolize_pc(void* pc, const char* fmt, char* out_buf, size_t out_buf_size);
#endif

// ThreadSanitizer starts its symbolizer (a child process and two pipes)
// the first time it symbolizes a stack, which it also does to match a
// suppression: started here, before any count, its descriptors are in
// every baseline.
inline void StartSanitizerSymbolizer() {
#ifdef LOCUS_TESTING_TSAN
  static const bool started = [] {
    char symbol[256];
    __sanitizer_symbolize_pc(reinterpret_cast<void*>(&StartSanitizerSymbolizer), "%F", symbol,
                             sizeof(symbol));
    return true;
  }();
  (void)started;
#endif
}

// Descriptors open in this process now (-1 if /proc cannot tell).
inline int OpenFdCount() {
  StartSanitizerSymbolizer();
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count - 1;  // the directory's own
}

// Waits until OpenFdCount() is `expected` or `timeout` passed, and returns
// the last count seen: a transport closes a frame's descriptors just after
// OnFrame returned, which may be after a test saw the frame.
inline int AwaitOpenFdCount(int expected, absl::Duration timeout = absl::Seconds(60)) {
  const absl::Time until = absl::Now() + timeout;
  int count = OpenFdCount();
  while (count != expected && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(1));
    count = OpenFdCount();
  }
  return count;
}

// Waits until OpenFdCount() is at most `limit` or `timeout` passed, and
// returns the last count seen. For a baseline that may include descriptors
// an earlier test's connection was still closing when it was taken.
inline int AwaitOpenFdCountAtMost(int limit, absl::Duration timeout = absl::Seconds(60)) {
  const absl::Time until = absl::Now() + timeout;
  int count = OpenFdCount();
  while (count > limit && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(1));
    count = OpenFdCount();
  }
  return count;
}

// Writes `bytes` on `socket` in one sendmsg with `count` descriptors
// attached (at most 253, the kernel's limit), all duplicates of one fresh
// file, which is closed again before this returns (the kernel holds its own
// references in flight); `*sent` says which file. Returns 0, or the errno
// of what failed (a short write is EMSGSIZE).
inline int SendRawWithFds(int socket, absl::string_view bytes, size_t count, FileId* sent) {
  const int file = memfd_create("raw-peer", MFD_CLOEXEC);
  if (file < 0) return errno;
  *sent = IdOf(file);
  std::vector<int> fds;
  for (size_t i = 0; i < count; ++i) {
    const int copy = fcntl(file, F_DUPFD_CLOEXEC, 0);
    if (copy >= 0) fds.push_back(copy);
  }
  int result = fds.size() == count ? 0 : EMFILE;
  if (result == 0) {
    iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * count));
    if (count > 0) {
      msg.msg_control = control.data();
      msg.msg_controllen = control.size();
      cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int) * count);
      std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * count);
    }
    const ssize_t n = sendmsg(socket, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      result = errno;
    } else if (static_cast<size_t>(n) != bytes.size()) {
      result = EMSGSIZE;
    }
  }
  for (int fd : fds) close(fd);
  close(file);
  return result;
}

}  // namespace locus::testing

#endif  // LOCUS_TESTS_TESTING_FD_TEST_UTIL_H_
