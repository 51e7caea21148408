// Compiled once as is (it must compile) and, by the callmodel.compile_fails.*
// tests, once per case with LOCUS_PROBE_<CASE> defined: each case must fail
// to compile, with the diagnostic the test expects (check_compile_fails.sh).
// The cases are what locus::Out and [[nodiscard]] exist to refuse; the
// IGNORED_* cases expect the function-level [[nodiscard]] diagnostic, since
// Abseil's class-level mark on absl::Status would fail them anyway.
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "callmodel.locus.h"
#include "locus/locus.h"

namespace callmodel {

absl::Status Probe(Greeter::Stub& stub, locus::Server& server) {
  Text request;
  Text reply;
  // The forms that compile.
  absl::Status status = stub.Greet(request, &reply);
  if (!status.ok()) return status;
  absl::StatusOr<Text> by_value = stub.Greet(request, {});
  if (!by_value.ok()) return by_value.status();
#if defined(LOCUS_PROBE_NULL_RESPONSE)
  status = stub.Greet(request, nullptr);  // a null literal where the response goes
#endif
#if defined(LOCUS_PROBE_BRACED_RESPONSE)
  status = stub.Greet(request, {}, {});  // `{}` where the response goes
#endif
#if defined(LOCUS_PROBE_IGNORED_CALL_STATUS)
  stub.Greet(request, &reply);  // the call's status dropped
#endif
#if defined(LOCUS_PROBE_IGNORED_CALL_REPLY)
  stub.Greet(request);  // the call's reply and status dropped
#endif
#if defined(LOCUS_PROBE_IGNORED_SERVER_STATUS)
  server.Start();  // the server may not be running
#endif
#if defined(LOCUS_PROBE_IGNORED_STREAM_STATUS)
  stub.Chat().Finish();  // the stream's end dropped
#endif
#if defined(LOCUS_PROBE_IGNORED_BIDI_STREAM)
  stub.Chat();  // the open stream dropped (not a Status: only Locus marks it)
#endif
#if defined(LOCUS_PROBE_IGNORED_SERVER_STREAM)
  stub.Repeat(RepeatRequest());  // the open stream dropped
#endif
  return server.Start();
}

}  // namespace callmodel
