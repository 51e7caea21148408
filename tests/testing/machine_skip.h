// Skips that depend on the machine, not on the code (one core, no IPv6
// loopback, socket buffers capped below what a test needs): a skip on a
// developer's machine, a failure in CI (environment CI=true, which .ci/run
// sets), so that a CI machine that cannot run a test never passes for one
// that did.
//
// Example:
//   LOCUS_SKIP_UNLESS_MACHINE(SpinBudget::Get().limit() > 0, "one core: nobody may spin");
#ifndef LOCUS_TESTS_TESTING_MACHINE_SKIP_H_
#define LOCUS_TESTS_TESTING_MACHINE_SKIP_H_

#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"

namespace locus::testing {

// Whether this run is CI's: CI set to anything but "", "0" or "false".
inline bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && *ci != '\0' && std::strcmp(ci, "0") != 0 && std::strcmp(ci, "false") != 0;
}

}  // namespace locus::testing

// Unless `can_run`: skips the test with `reason` (a streamable message), or
// fails it in CI. A complete statement; use it where GTEST_SKIP() would go.
#define LOCUS_SKIP_UNLESS_MACHINE(can_run, reason)                                   \
  if (can_run) {                                                                     \
  } else if (::locus::testing::InCi())                                               \
    GTEST_FAIL() << "this machine cannot run the test (a skip elsewhere, a failure " \
                    "with CI=true): "                                                \
                 << reason;                                                          \
  else                                                                               \
    GTEST_SKIP() << reason

#endif  // LOCUS_TESTS_TESTING_MACHINE_SKIP_H_
