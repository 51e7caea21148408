// The systems locus-bench measures. Each system has a server side (run in
// the `--role=server` child) and a client side (run in the harness process).
//
// Adding a system or a transport: add a `System` entry (or extend one) and
// list the transports it serves in `transports`; main.cc picks addresses and
// schedules cases from these tables.
#ifndef LOCUS_BENCH_HARNESS_SYSTEMS_H_
#define LOCUS_BENCH_HARNESS_SYSTEMS_H_

#include <string>
#include <vector>

#include "harness/common.h"

namespace locus_bench {

struct System {
  std::string name;  // "raw", "locus", "grpc", "capnp", "thrift"
  // Transports this system can run on in this build.
  std::vector<std::string> transports;
  // Optional: set up resources the server inherits (e.g. a shared-memory fd),
  // adding server flags. Returns false with `err` on failure.
  bool (*prepare)(const CaseSpec& spec, int* keep_fd, std::vector<std::string>* server_args,
                  std::string* err) = nullptr;
  // Optional: release what prepare() made.
  void (*cleanup)() = nullptr;
  // Server process: listen on flags["address"], then ServeControlLoop().
  // Returns only on failure (exit status).
  int (*serve)(const Flags& flags) = nullptr;
  // Client: run `spec` against the server at `address`.
  RunResult (*run_client)(const CaseSpec& spec, const std::string& address,
                          WindowHooks& hooks) = nullptr;
  // Optional: runs `spec` with the server inside the harness process (no
  // child; used for transport "inproc"). The client's CPU time then covers
  // both sides.
  RunResult (*run_in_process)(const CaseSpec& spec, WindowHooks& hooks) = nullptr;
};

System RawSystem();
System LocusSystem();
// Empty `transports` (and a `note`) when gRPC was not found at build time.
System GrpcSystem(std::string* note);
// Optional baselines (capnp_cases.cc, thrift_cases.cc): empty `transports`
// (and a `note`) when Cap'n Proto / Thrift was not found at build time.
System CapnpSystem(std::string* note);
System ThriftSystem(std::string* note);

// Locus transports known to the harness, and whether this build has them.
struct LocusTransportInfo {
  std::string name;
  bool available;
  std::string note;  // why not, when unavailable
};
const std::vector<LocusTransportInfo>& LocusTransports();

}  // namespace locus_bench

#endif  // LOCUS_BENCH_HARNESS_SYSTEMS_H_
