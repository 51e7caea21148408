// What one attempt of a call learned about whether its server saw it: the
// one fact that makes a failed call safe to send again (retry.h). Filled by
// whoever fails the attempt (the channel finding no connection, the
// ConnectionCore refusing or losing it before it left, a GOAWAY that says
// it was not processed, an in-process server that had stopped), read by the
// retry driver once the attempt has ended.
//
// Example:
//   AttemptReport report;
//   absl::Status status = core->CallUnary(method, request, &response, options, nullptr, &report);
//   if (!status.ok() && report.server_never_saw_it()) { /* safe to send again */ }
//
// Thread-safety: written by the thread that ends the attempt before it
// reports the end (returns, runs `done`, ends the stream), read after.
#ifndef LOCUS_RUNTIME_INTERNAL_ATTEMPT_REPORT_H_
#define LOCUS_RUNTIME_INTERNAL_ATTEMPT_REPORT_H_

namespace locus::internal {

struct AttemptReport {
  // No connection to send it on: connecting failed, or the channel is
  // waiting out its backoff after a failed connection attempt.
  bool no_route = false;
  // It reached a connection but the server never processed it: refused
  // before it was sent (the connection was draining or closed), its send
  // failed (the peer cannot have the whole frame), a GOAWAY listed it as
  // not processed, or an in-process server had stopped.
  bool not_processed = false;

  bool server_never_saw_it() const { return no_route || not_processed; }
};

}  // namespace locus::internal

#endif  // LOCUS_RUNTIME_INTERNAL_ATTEMPT_REPORT_H_
