// Out<T>: where a generated stub method writes its response: a pointer that
// cannot be given as a null literal.
//
// Example:
//   demo::SayReply reply;                                  // reused call after call
//   absl::Status status = stub.Say(request, &reply);       // fills `reply`
//   absl::StatusOr<demo::SayReply> same = stub.Say(request, {});   // {}: the options
//
// Why: with a plain `Reply*` parameter, `stub.Say(request, {})` (meaning
// "default options") chose the out-parameter overload with a null response,
// because `{}` converts to a pointer better than to CallOptions. Out<T> has
// no default constructor and refuses `nullptr`, so `{}` selects the overload
// that returns the reply, and `stub.Say(request, nullptr)` does not compile.
// A pointer variable that happens to be null still converts; the stub then
// fails the call with INVALID_ARGUMENT instead of writing through it.
//
// It converts implicitly from T*, so calls read as with a pointer; in a
// mock (MockFooStub, codegen/README.md) gmock's SetArgPointee works on it.
// Out<T> does not own what it points to. Trivially copyable.
#ifndef LOCUS_OUT_H_
#define LOCUS_OUT_H_

#include <cstddef>

namespace locus {

template <typename T>
class Out {
 public:
  using element_type = T;

  // Implicit: `stub.Say(request, &reply)`.
  constexpr Out(T* pointer) : pointer_(pointer) {}  // NOLINT(google-explicit-constructor)
  // A null literal is a compile-time error (and so is `{}`: no default
  // constructor).
  Out(std::nullptr_t) = delete;

  constexpr T* get() const { return pointer_; }
  constexpr T& operator*() const { return *pointer_; }
  constexpr T* operator->() const { return pointer_; }

 private:
  T* pointer_;
};

}  // namespace locus

#endif  // LOCUS_OUT_H_
