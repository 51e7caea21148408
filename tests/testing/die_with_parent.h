// For the peer executables tests start (tests/testing/test_util.h's
// ChildProcess): the peer is killed when the test process that started it
// dies, even by a crash or sanitizer abort that runs no destructor. A peer
// left running would hold the test's inherited stderr open, and CTest would
// wait for it until the test's timeout.
//
// Example (first line of a peer's main):
//   int main(int argc, char** argv) {
//     locus::testing::DieWithParent();
//     ...
//
// Hazard: the signal follows the *thread* that started the child; tests
// start peers from their main thread.
#ifndef LOCUS_TESTS_TESTING_DIE_WITH_PARENT_H_
#define LOCUS_TESTS_TESTING_DIE_WITH_PARENT_H_

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

namespace locus::testing {

inline void DieWithParent() {
  const pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The parent may have died before the prctl: then nobody would signal.
  if (getppid() != parent) _exit(1);
}

}  // namespace locus::testing

#endif  // LOCUS_TESTS_TESTING_DIE_WITH_PARENT_H_
