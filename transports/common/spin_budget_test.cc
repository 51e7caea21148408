// SpinBudget: at most limit() threads hold a slot; a thread that holds one
// gets it again at once (nested polls on one thread are one spinner).
#include "transports/common/spin_budget.h"

#include <thread>

#include "gtest/gtest.h"
#include "tests/testing/machine_skip.h"

namespace locus::internal {
namespace {

// Takes every free slot on this thread's behalf from other threads (the
// budget is process-wide: the slots of a thread that is not this one).
class SlotHolders {
 public:
  explicit SlotHolders(int count) {
    for (int i = 0; i < count; ++i) {
      bool ok = false;
      std::thread([&ok] { ok = SpinBudget::Get().TryAcquire(); }).join();
      EXPECT_TRUE(ok);
      ++held_;
    }
  }
  // Slots taken by threads that are gone cannot be released by them; the
  // budget is counted, so any thread's Release returns one.
  ~SlotHolders() {
    for (; held_ > 0; --held_) std::thread([] { SpinBudget::Get().Release(); }).join();
  }

 private:
  int held_ = 0;
};

TEST(SpinBudgetTest, NoMoreThanTheLimitAtOnce) {
  SpinBudget& budget = SpinBudget::Get();
  LOCUS_SKIP_UNLESS_MACHINE(budget.limit() > 0, "one core: nobody may spin");
  SlotHolders others(budget.limit());
  EXPECT_FALSE(budget.TryAcquire());
}

TEST(SpinBudgetTest, AThreadThatHoldsASlotGetsItAgain) {
  SpinBudget& budget = SpinBudget::Get();
  LOCUS_SKIP_UNLESS_MACHINE(budget.limit() > 0, "one core: nobody may spin");
  SlotHolders others(budget.limit() - 1);
  ASSERT_TRUE(budget.TryAcquire());  // the last slot
  ASSERT_TRUE(budget.TryAcquire()) << "nested acquire on the same thread";
  budget.Release();
  // Still held once: another thread finds no slot.
  bool other = true;
  std::thread([&] { other = budget.TryAcquire(); }).join();
  EXPECT_FALSE(other);
  budget.Release();
  std::thread([&] {
    other = budget.TryAcquire();
    if (other) budget.Release();
  }).join();
  EXPECT_TRUE(other) << "the slot was not given back";
}

}  // namespace
}  // namespace locus::internal
